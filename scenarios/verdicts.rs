//! The verdict table `umlab analyze` ends with: for one store, each server
//! persona (rows) against each client preset (columns), at the store's size.
//! Every cell is the engine's [`predict`] for that persona and preset, which
//! plans through lab-server's own start planning (`persona::plan`), so a cell
//! and a measured scenario of the same setup cannot disagree.

use std::fmt;

use certgen::Store;
use lab_server::persona::{Persona, PersonaName};
use lab_server::policy;
use um_sim::client::FailureClass;
use um_sim::profile::{Profile, Rule};

use crate::engine::{Outcome, Prediction, ServerCause, Setup, class_name, predict};

/// One server row: a persona at its own settings, or with its advertising
/// switch turned the other way (SendTrustedIssuerList, AdvertiseTrustStoreCaNames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    /// The persona.
    pub persona: PersonaName,
    /// Whether it advertises its names.
    pub advertise: bool,
}

impl Server {
    /// Every persona at its defaults, then the switches worth a row: Schannel
    /// 2008 R2 with SendTrustedIssuerList 0 (the documented workaround),
    /// Schannel 2012 with it set to 1, ALB advertising.
    pub fn rows() -> Vec<Server> {
        let mut rows: Vec<Server> = PersonaName::ALL
            .iter()
            .map(|&persona| Server {
                persona,
                advertise: Persona::get(persona).advertise,
            })
            .collect();
        for persona in [
            PersonaName::Schannel2008R2,
            PersonaName::Schannel2012,
            PersonaName::AwsAlb,
        ] {
            rows.push(Server {
                persona,
                advertise: !Persona::get(persona).advertise,
            });
        }
        rows
    }

    /// The row's label: the persona, and the switch when it is not the
    /// persona's default.
    pub fn label(&self) -> String {
        let p = Persona::get(self.persona);
        if self.advertise == p.advertise {
            return self.persona.to_string();
        }
        let switch = match self.persona {
            PersonaName::Schannel2008R2 | PersonaName::Schannel2012 => {
                format!("STIL={}", u8::from(self.advertise))
            }
            _ => format!("advertise={}", if self.advertise { "on" } else { "off" }),
        };
        format!("{} {switch}", self.persona)
    }

    /// The policy settings this row runs with (`budget`: Schannel's cap).
    pub fn settings(&self, budget: usize) -> policy::Settings {
        policy::Settings {
            policy: Persona::get(self.persona).policy(self.advertise),
            budget,
            ..policy::Settings::default()
        }
    }

    /// The prediction's setup for this row and a client profile: TLS 1.2,
    /// 16 KB records, the persona's client authentication; no system store
    /// (dotnet-linux: the store alone) and no issuers store.
    pub fn setup(&self, client: Profile) -> Setup {
        Setup::persona(self.persona, client)
    }
}

/// One client column.
#[derive(Clone, Debug)]
pub struct Column {
    /// The preset's name (or `lenient`).
    pub preset: String,
    /// Whether a real-peer test proves it here ([`um_sim::presets::Preset::is_verified`]).
    pub verified: bool,
}

/// The table: rows by server, one prediction per client column.
#[derive(Clone, Debug)]
pub struct Table {
    /// The client presets, in [`crate::analyze::preset_names`] order.
    pub columns: Vec<Column>,
    /// Each server row and its cells, one per column.
    pub rows: Vec<(Server, Vec<Prediction>)>,
}

/// Computes the table for a store; `chain` holds the client chain's issuers
/// (None: issuer-listed clients are assumed to find theirs).
pub fn table<I: AsRef<[u8]>>(
    store: &Store,
    budget: usize,
    chain: Option<&[I]>,
) -> Result<Table, String> {
    let mut columns = Vec::new();
    let mut profiles = Vec::new();
    for name in crate::analyze::preset_names() {
        let profile: Profile = name.parse()?;
        columns.push(Column {
            preset: name.to_owned(),
            verified: um_sim::presets::find(name).is_some_and(|p| p.is_verified()),
        });
        profiles.push(profile);
    }
    let rows = Server::rows()
        .into_iter()
        .map(|server| {
            let settings = server.settings(budget);
            let cells = profiles
                .iter()
                .map(|profile| predict(&server.setup(profile.clone()), &settings, store, chain))
                .collect();
            (server, cells)
        })
        .collect();
    Ok(Table { columns, rows })
}

/// A cell's short code: `ok`, or why it fails.
pub fn code(p: &Prediction) -> &'static str {
    match (&p.outcome, p.server, p.rule) {
        (Outcome::Delivered, _, _) => "ok",
        (Outcome::Refused(_), _, _) => "RF",
        (_, Some(ServerCause::FailsEachHandshake), _) => "EH",
        (_, Some(ServerCause::ClientAuthBroken), _) => "KB",
        (_, Some(ServerCause::Reply421), _) => "421",
        (_, Some(ServerCause::Untrusted), _) => "UT",
        (_, Some(ServerCause::NoCommonVersion), _) => "TV",
        (_, _, Some(Rule::IssuerListed)) => "NA",
        (_, _, Some(Rule::MaxBody(_))) => "MB",
        (_, _, Some(Rule::OneRecord)) => "1R",
        (_, _, Some(Rule::MaxBuffer(_))) => "BF",
        (Outcome::Failed(c), None, None) if *c == class_name(FailureClass::OwnStackLimit) => "OS",
        (Outcome::Failed(_), _, None) => "??",
    }
}

/// What each code means, for the legend.
pub const LEGEND: &[(&str, &str)] = &[
    ("ok", "delivers"),
    (
        "NA",
        "no acceptable certificate: the issuer is not in the list sent, the client sends none \
         (the incident)",
    ),
    (
        "MB",
        "the client's body limit (max-body: Java, Schannel 32,768, ...)",
    ),
    (
        "1R",
        "the client needs the request in one record (pre-update Schannel, Mbed TLS <= 3.6.2)",
    ),
    (
        "BF",
        "the client's input buffer (max-buffer: Mbed TLS >= 3.6.3, rustls)",
    ),
    (
        "OS",
        "past um-sim's own rustls limit (body > 65,510): the lab cannot show what this client does",
    ),
    (
        "EH",
        "every handshake fails: the server ends it with internal_error past 65,535 bytes of \
         names, and keeps serving (every-handshake)",
    ),
    (
        "KB",
        "KB 2880390: a Root store past 16 KB breaks client authentication (client-auth-broken)",
    ),
    (
        "421",
        "Postfix: TLS completes without a usable certificate, then 421 4.7.1",
    ),
    (
        "UT",
        "the client's chain ends at none of the server's trust anchors",
    ),
    (
        "TV",
        "no common TLS version: the server offers TLS 1.2 only and the preset models the \
         stack's TLS 1.3 behaviour (erlang-tls13; its TLS 1.2 one is erlang-tls12)",
    ),
    (
        "RF",
        "refused: the server will not start with this store (s2n past 20,000 bytes of list, ALB \
         past 10,000 bytes of subjects, or past the TLS limit)",
    ),
];

/// Short column heads for the presets um-sim has today; another name shows
/// its first four characters.
fn short(preset: &str) -> String {
    let known = [
        ("schannel-2008r2", "sc08"),
        ("schannel-legacy", "scLg"),
        ("dotnet-windows", "netW"),
        ("java17", "jv17"),
        ("go", "go"),
        ("nss", "nss"),
        ("erlang-tls12", "er12"),
        ("erlang-tls13", "er13"),
        ("openssl3", "ossl"),
        ("gnutls37", "gnut"),
        ("boringssl", "bssl"),
        ("rustls023", "rust"),
        ("s2n", "s2n"),
        ("mbedtls-3.6.2", "m362"),
        ("mbedtls-3.6.3", "m363"),
        ("wolfssl5", "wolf"),
        ("lenient", "len"),
    ];
    known.iter().find(|(name, _)| *name == preset).map_or_else(
        || preset.chars().take(4).collect(),
        |(_, s)| (*s).to_owned(),
    )
}

/// Longest line the table's notes take.
const WIDTH: usize = 110;

/// Writes `text` after `head`, wrapped at [`WIDTH`] columns, continuation
/// lines indented as deep as `head`.
fn wrap(f: &mut fmt::Formatter<'_>, head: &str, text: &str) -> fmt::Result {
    let indent = " ".repeat(head.chars().count());
    let mut line = head.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > WIDTH {
            writeln!(f, "{line}")?;
            line = indent.clone();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    writeln!(f, "{line}")
}

/// Width of the row labels.
const LABEL: usize = 23;
/// Width of a cell, the separating space included.
const CELL: usize = 6;

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Left-aligned cells, each line trimmed: a preset's short name never
        // follows a run of blanks that could read as an indented list item.
        let mut head = format!("{:<LABEL$}", "server \\ client");
        for c in &self.columns {
            let name = format!("{}{}", short(&c.preset), if c.verified { "" } else { "*" });
            head.push_str(&format!("{name:<CELL$}"));
        }
        writeln!(f, "{}", head.trim_end())?;
        for (server, cells) in &self.rows {
            let mut line = format!("{:<LABEL$}", server.label());
            for p in cells {
                line.push_str(&format!("{:<CELL$}", code(p)));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        let key: Vec<String> = self
            .columns
            .iter()
            .map(|c| format!("{}={}", short(&c.preset), c.preset))
            .collect();
        wrap(f, "clients: ", &key.join(", "))?;
        wrap(
            f,
            "  ",
            "* not verified here: no real-peer test of that stack on this machine (`um-sim \
             profiles` gives the reason)",
        )?;
        wrap(
            f,
            "servers: ",
            "TLS 1.2, 16 KB records, each persona's own settings (`lab-server personas`); STIL = \
             SendTrustedIssuerList; dotnet-linux without its system store (the store alone)",
        )?;
        let shown: Vec<&str> = self
            .rows
            .iter()
            .flat_map(|(_, cells)| cells.iter().map(code))
            .collect();
        for (code, meaning) in LEGEND.iter().filter(|(c, _)| shown.contains(c)) {
            wrap(f, &format!("  {code:<4} "), meaning)?;
        }
        Ok(())
    }
}
