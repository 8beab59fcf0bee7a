//! The SMTP server state machine (RFC 5321, STARTTLS per RFC 3207). Pure: it
//! turns command lines into replies and tells the I/O layer what to do next.

use std::fmt;

/// Limits with the reply codes they produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest line in octets, CRLF included (500 5.5.2 past it).
    pub max_line: usize,
    /// Largest message in octets (552 5.3.4 past it).
    pub max_message: usize,
    /// Most recipients per transaction (452 4.5.3 past it).
    pub max_recipients: usize,
    /// Errors tolerated per session before 421 and close.
    pub max_errors: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_line: 1000,
            max_message: 25 * 1024 * 1024,
            max_recipients: 100,
            max_errors: 10,
        }
    }
}

/// Settings of a session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Name in the greeting and EHLO reply.
    pub hostname: String,
    /// Whether STARTTLS is offered.
    pub tls_offered: bool,
    /// Whether mail is refused (530 5.7.0) before STARTTLS.
    pub require_tls: bool,
    /// Limits.
    pub limits: Limits,
}

/// An SMTP reply: code, enhanced status code, text lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Three-digit code.
    pub code: u16,
    /// Text lines; the enhanced code, when there is one, starts each.
    pub lines: Vec<String>,
}

impl Reply {
    fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        let text = text.into();
        let line = if enhanced.is_empty() {
            text
        } else {
            format!("{enhanced} {text}")
        };
        Reply {
            code,
            lines: vec![line],
        }
    }

    /// A one-line reply with an enhanced status code (RFC 3463), as an
    /// injected fault sends it.
    pub fn with_status(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply::new(code, enhanced, text)
    }

    /// Whether this is a permanent (5xx) or transient (4xx) error.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }
}

impl fmt::Display for Reply {
    /// The wire form, CRLF-terminated, continuation lines marked with '-'.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            write!(f, "{}{sep}{line}\r\n", self.code)?;
        }
        if self.lines.is_empty() {
            write!(f, "{} \r\n", self.code)?;
        }
        Ok(())
    }
}

/// What the I/O layer does after sending the reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Command,
    /// Discard any bytes already buffered, then run the TLS handshake.
    StartTls,
    /// Read the message with a [`DataReader`].
    Data,
    /// Close the connection.
    Close,
}

/// The envelope of a transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Name the client gave in EHLO/HELO.
    pub helo: String,
    /// Reverse path (empty for the null sender).
    pub from: String,
    /// Forward paths.
    pub to: Vec<String>,
}

/// One SMTP session.
#[derive(Clone, Debug)]
pub struct Session {
    cfg: SessionConfig,
    tls: bool,
    helo: Option<String>,
    from: Option<String>,
    to: Vec<String>,
    errors: u32,
}

impl Session {
    /// A session on a fresh connection.
    pub fn new(cfg: SessionConfig) -> Session {
        Session {
            cfg,
            tls: false,
            helo: None,
            from: None,
            to: Vec::new(),
            errors: 0,
        }
    }

    /// The 220 greeting.
    pub fn greeting(&self) -> Reply {
        Reply::new(
            220,
            "",
            format!("{} ESMTP umlab lab-server", self.cfg.hostname),
        )
    }

    /// Whether TLS is active.
    pub fn tls_active(&self) -> bool {
        self.tls
    }

    /// After a completed TLS handshake: RFC 3207 4.2, the client must start
    /// over with EHLO and no state from before TLS survives.
    pub fn tls_established(&mut self) {
        self.tls = true;
        self.helo = None;
        self.reset();
    }

    fn reset(&mut self) {
        self.from = None;
        self.to.clear();
    }

    /// The MAIL just accepted is refused after all (an injected fault): no
    /// transaction is open, so RCPT gets 503 as after any refused MAIL
    /// (RFC 5321 3.3).
    pub fn refuse_transaction(&mut self) {
        self.reset();
    }

    /// The RCPT just accepted is refused after all (an injected fault): the
    /// recipient is not part of the transaction, so with none accepted DATA
    /// gets 554 5.5.1 (RFC 5321 3.3).
    pub fn refuse_last_recipient(&mut self) {
        self.to.pop();
    }

    /// A line over the limit (the I/O layer discarded it).
    pub fn line_too_long(&mut self) -> (Reply, Next) {
        self.error(Reply::new(500, "5.5.2", "Line too long"))
    }

    /// One command line, without its CRLF.
    pub fn command(&mut self, line: &[u8]) -> (Reply, Next) {
        if line.contains(&0) {
            return self.error(Reply::new(500, "5.5.2", "NUL character in command"));
        }
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        let (verb, args) = match text.split_once(' ') {
            Some((v, a)) => (v, a.trim()),
            None => (text, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.ehlo(args, true),
            "HELO" => self.ehlo(args, false),
            "STARTTLS" => self.starttls(args),
            "MAIL" => self.mail(args),
            "RCPT" => self.rcpt(args),
            "DATA" => self.data(args),
            "RSET" => {
                self.reset();
                ok(Reply::new(250, "2.0.0", "OK"))
            }
            "NOOP" => ok(Reply::new(250, "2.0.0", "OK")),
            "VRFY" => ok(Reply::new(
                252,
                "2.5.2",
                "Cannot VRFY user, but will accept message",
            )),
            "QUIT" => (Reply::new(221, "2.0.0", "Bye"), Next::Close),
            _ => self.error(Reply::new(500, "5.5.2", "Command unrecognized")),
        }
    }

    fn ehlo(&mut self, args: &str, extended: bool) -> (Reply, Next) {
        let verb = if extended { "EHLO" } else { "HELO" };
        if args.is_empty() || args.contains(char::is_whitespace) {
            return self.error(Reply::new(501, "5.5.4", format!("Syntax: {verb} hostname")));
        }
        self.helo = Some(args.to_owned());
        self.reset();
        let greet = format!("{} greets {args}", self.cfg.hostname);
        if !extended {
            return ok(Reply {
                code: 250,
                lines: vec![greet],
            });
        }
        let mut lines = vec![
            greet,
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.cfg.limits.max_message),
            "8BITMIME".to_owned(),
            "ENHANCEDSTATUSCODES".to_owned(),
        ];
        if self.cfg.tls_offered && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        ok(Reply { code: 250, lines })
    }

    fn starttls(&mut self, args: &str) -> (Reply, Next) {
        if self.tls {
            return self.error(Reply::new(503, "5.5.1", "TLS already active"));
        }
        if !self.cfg.tls_offered {
            return self.error(Reply::new(502, "5.5.1", "STARTTLS not available"));
        }
        if !args.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "Syntax: STARTTLS"));
        }
        (
            Reply::new(220, "2.0.0", "Ready to start TLS"),
            Next::StartTls,
        )
    }

    /// Checks common to MAIL and RCPT.
    fn transaction_allowed(&self) -> Option<Reply> {
        if self.helo.is_none() {
            return Some(Reply::new(503, "5.5.1", "Send EHLO first"));
        }
        if self.cfg.require_tls && !self.tls {
            return Some(Reply::new(
                530,
                "5.7.0",
                "Must issue a STARTTLS command first",
            ));
        }
        None
    }

    fn mail(&mut self, args: &str) -> (Reply, Next) {
        if let Some(r) = self.transaction_allowed() {
            return self.error(r);
        }
        if self.from.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Sender already specified"));
        }
        let Some((path, params)) = parse_path(args, "FROM:") else {
            return self.error(Reply::new(501, "5.5.4", "Syntax: MAIL FROM:<address>"));
        };
        for p in params.split_whitespace() {
            let (key, value) = p.split_once('=').unwrap_or((p, ""));
            match key.to_ascii_uppercase().as_str() {
                // RFC 1870: size-value is 1*20DIGIT. A valid value too large
                // for u64 is still just too large: 552, not a syntax error.
                "SIZE"
                    if value.is_empty()
                        || value.len() > 20
                        || !value.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    return self.error(Reply::new(501, "5.5.4", "Bad SIZE parameter"));
                }
                "SIZE" => {
                    let fits = value
                        .parse::<u64>()
                        .is_ok_and(|n| n <= self.cfg.limits.max_message as u64);
                    if !fits {
                        return self.error(Reply::new(
                            552,
                            "5.3.4",
                            "Message size exceeds fixed limit",
                        ));
                    }
                }
                "BODY" if matches!(value.to_ascii_uppercase().as_str(), "7BIT" | "8BITMIME") => {}
                _ => {
                    return self.error(Reply::new(
                        555,
                        "5.5.4",
                        format!("Unsupported parameter {key}"),
                    ));
                }
            }
        }
        self.from = Some(path);
        ok(Reply::new(250, "2.1.0", "Sender OK"))
    }

    fn rcpt(&mut self, args: &str) -> (Reply, Next) {
        if let Some(r) = self.transaction_allowed() {
            return self.error(r);
        }
        if self.from.is_none() {
            return self.error(Reply::new(503, "5.5.1", "Need MAIL command"));
        }
        let Some((path, params)) = parse_path(args, "TO:") else {
            return self.error(Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>"));
        };
        if path.is_empty() || !params.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "Syntax: RCPT TO:<address>"));
        }
        if self.to.len() >= self.cfg.limits.max_recipients {
            // RFC 5321 4.5.3.1.10: the excess gets 452 and the transaction
            // goes on with the accepted ones; it is no client error, so it
            // never counts toward the error limit that closes the session.
            return ok(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        self.to.push(path);
        ok(Reply::new(250, "2.1.5", "Recipient OK"))
    }

    fn data(&mut self, args: &str) -> (Reply, Next) {
        if !args.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "Syntax: DATA"));
        }
        if let Some(r) = self.transaction_allowed() {
            return self.error(r);
        }
        if self.from.is_none() {
            return self.error(Reply::new(503, "5.5.1", "Need MAIL command"));
        }
        if self.to.is_empty() {
            return self.error(Reply::new(554, "5.5.1", "No valid recipients"));
        }
        (
            Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"),
            Next::Data,
        )
    }

    /// The message has been read. Returns the envelope to store, or the reply
    /// refusing it. Either way the transaction ends.
    pub fn data_received(&mut self, data: &DataReader) -> Result<Envelope, Reply> {
        let envelope = Envelope {
            helo: self.helo.clone().unwrap_or_default(),
            from: self.from.take().unwrap_or_default(),
            to: std::mem::take(&mut self.to),
        };
        if data.too_big() {
            return Err(Reply::new(552, "5.3.4", "Message size exceeds fixed limit"));
        }
        if data.line_too_long() {
            return Err(Reply::new(500, "5.5.2", "Message line too long"));
        }
        Ok(envelope)
    }

    /// The reply once storage finished: 250 only when the message is durable.
    pub fn stored(&mut self, result: Result<&str, &str>) -> Reply {
        match result {
            Ok(id) => Reply::new(250, "2.0.0", format!("OK queued as {id}")),
            Err(why) => Reply::new(451, "4.3.0", format!("Local error in storage: {why}")),
        }
    }

    /// The session read more than its byte budget (Stalwart's reply): the
    /// connection closes, nothing of an unfinished message is stored.
    pub fn transfer_quota_exceeded(&self) -> (Reply, Next) {
        (
            Reply::new(451, "4.7.28", "Session exceeded transfer quota"),
            Next::Close,
        )
    }

    /// The session outlived its lifetime.
    pub fn time_limit_exceeded(&self) -> (Reply, Next) {
        (
            Reply::new(
                421,
                "4.4.2",
                "Session time limit exceeded, closing connection",
            ),
            Next::Close,
        )
    }

    /// No complete command line arrived within the allowed time.
    pub fn idle_timeout(&self) -> (Reply, Next) {
        (
            Reply::new(421, "4.4.2", "Idle timeout, closing connection"),
            Next::Close,
        )
    }

    /// The message did not arrive within the DATA timeout.
    pub fn data_timeout(&self) -> (Reply, Next) {
        (
            Reply::new(421, "4.4.2", "DATA timeout, closing connection"),
            Next::Close,
        )
    }

    /// Postfix's refusal of a TLS client without a trusted certificate
    /// (`smtpd_tls_req_ccert`): `421 4.7.1 <host> Error: <why>`, then close.
    pub fn client_certificate_refused(&self, why: &str) -> (Reply, Next) {
        (
            Reply::new(421, "4.7.1", format!("{} Error: {why}", self.cfg.hostname)),
            Next::Close,
        )
    }

    /// The server is stopping.
    pub fn shutting_down(&self) -> (Reply, Next) {
        (
            Reply::new(421, "4.3.2", "Service shutting down"),
            Next::Close,
        )
    }

    /// Counts an error reply; past the limit the session ends with 421.
    fn error(&mut self, reply: Reply) -> (Reply, Next) {
        self.errors += 1;
        if self.errors > self.cfg.limits.max_errors {
            return (
                Reply::new(421, "4.7.0", "Too many errors, closing connection"),
                Next::Close,
            );
        }
        (reply, Next::Command)
    }
}

fn ok(reply: Reply) -> (Reply, Next) {
    (reply, Next::Command)
}

/// Parses `FROM:<path> params` (or `TO:`); a space after the colon and a
/// missing pair of brackets are tolerated, as most servers do.
fn parse_path(args: &str, prefix: &str) -> Option<(String, String)> {
    let head = args.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = args.get(prefix.len()..)?.trim_start();
    let (path, params) = if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        (inner.get(..end)?, inner.get(end + 1..)?)
    } else {
        rest.split_once(' ').unwrap_or((rest, ""))
    };
    if path.contains(char::is_whitespace) || path.contains(['<', '>']) {
        return None;
    }
    Some((path.to_owned(), params.trim().to_owned()))
}

/// Reads a message body line by line: dot-unstuffing, the end marker, size
/// and line-length limits. Keeps reading past a limit so the reply comes at
/// the end of the message, where the client expects it.
///
/// Only `<CRLF>.<CRLF>` ends the message (RFC 5321 4.1.1.4): a dot line
/// reached or ended by a bare LF is content. Otherwise text after `<LF>.<LF>`
/// would run as commands (SMTP smuggling).
#[derive(Clone, Debug)]
pub struct DataReader {
    body: Vec<u8>,
    size: usize,
    max_message: usize,
    too_big: bool,
    line_too_long: bool,
    done: bool,
    /// Whether the previous line ended with CRLF (at first: the DATA
    /// command's line).
    after_crlf: bool,
}

impl DataReader {
    /// A reader enforcing `max_message` octets.
    pub fn new(max_message: usize) -> DataReader {
        DataReader {
            body: Vec::new(),
            size: 0,
            max_message,
            too_big: false,
            line_too_long: false,
            done: false,
            after_crlf: true,
        }
    }

    /// A reader for the message after a DATA command line that ended with
    /// CRLF (`crlf`) or with a bare LF. After a bare LF no `<CRLF>` comes
    /// before a first "." line, so that line is content, as it is anywhere
    /// else after a bare LF.
    pub fn after_command(max_message: usize, crlf: bool) -> DataReader {
        DataReader {
            after_crlf: crlf,
            ..DataReader::new(max_message)
        }
    }

    /// One line without its line end; `crlf` when it ended with CRLF (not a
    /// bare LF), `too_long` when the I/O layer cut it. Returns true at the end
    /// marker.
    pub fn line(&mut self, line: &[u8], crlf: bool, too_long: bool) -> bool {
        if self.done {
            return true;
        }
        let after_crlf = std::mem::replace(&mut self.after_crlf, crlf);
        if line == b"." && crlf && after_crlf && !too_long {
            self.done = true;
            return true;
        }
        self.line_too_long |= too_long;
        let line = line.strip_prefix(b".").unwrap_or(line);
        self.size += line.len() + 2;
        if self.size > self.max_message {
            self.too_big = true;
            self.body = Vec::new();
        } else {
            self.body.extend_from_slice(line);
            self.body.extend_from_slice(b"\r\n");
        }
        false
    }

    /// The unstuffed message (empty once it was too big).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Octets received, unstuffed.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Whether the message passed the size limit.
    pub fn too_big(&self) -> bool {
        self.too_big
    }

    /// Whether a line passed the line limit.
    pub fn line_too_long(&self) -> bool {
        self.line_too_long
    }
}

/// A line as the [`LineFramer`] delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// The line without its line end, and whether that end was CRLF (not a
    /// bare LF).
    Text(Vec<u8>, bool),
    /// A line over the limit, consumed to its end and dropped, and whether
    /// its end was CRLF. Only `<CRLF>.<CRLF>` ends DATA, so a cut line's
    /// ending matters as much as a whole one's.
    TooLong(bool),
}

/// Splits a byte stream into LF-terminated lines, holding at most `max`
/// bytes of one line: a longer line is consumed to its end and reported as
/// too long. Pure; the I/O layer feeds it whatever the socket gave.
#[derive(Clone, Debug)]
pub struct LineFramer {
    max: usize,
    line: Vec<u8>,
    too_long: bool,
    /// The last byte consumed, to tell CRLF from a bare LF across pieces.
    last: Option<u8>,
}

impl LineFramer {
    /// A framer for lines of at most `max` bytes, line end included.
    pub fn new(max: usize) -> LineFramer {
        LineFramer {
            max,
            line: Vec::new(),
            too_long: false,
            last: None,
        }
    }

    /// Consumes `input` up to and including its first LF. Returns the bytes
    /// consumed and, when a line ended, the line.
    pub fn feed(&mut self, input: &[u8]) -> (usize, Option<Line>) {
        let (take, done) = match input.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (input.len(), false),
        };
        let piece = input.get(..take).unwrap_or_default();
        let before_lf = if done {
            take.checked_sub(2)
                .and_then(|i| piece.get(i))
                .or(self.last.as_ref())
        } else {
            piece.last().or(self.last.as_ref())
        };
        let crlf = before_lf == Some(&b'\r');
        self.last = piece.last().copied();
        if !self.too_long {
            self.line.extend_from_slice(piece);
            if self.line.len() > self.max {
                self.too_long = true;
                self.line = Vec::new();
            }
        }
        if !done {
            return (take, None);
        }
        let line = if std::mem::take(&mut self.too_long) {
            Line::TooLong(crlf)
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.pop();
            if crlf {
                line.pop();
            }
            Line::Text(line, crlf)
        };
        self.line = Vec::new();
        (take, Some(line))
    }
}
