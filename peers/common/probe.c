/* See probe.h. */
#define _POSIX_C_SOURCE 200809L
#include "probe.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void usage(const char *msg)
{
    fprintf(stderr, "%s\nusage: run --host H --port P --cert CHAIN.pem --key KEY.pem "
                    "--ca CA.pem [--tls 1.2|1.3] [--server-name NAME]\n",
            msg);
    exit(2);
}

void probe_parse_args(int argc, char **argv, struct probe_args *args)
{
    memset(args, 0, sizeof(*args));
    for (int i = 1; i < argc; i += 2) {
        const char *name = argv[i];
        if (i + 1 >= argc)
            usage("missing value");
        const char *value = argv[i + 1];
        if (strcmp(name, "--host") == 0)
            args->host = value;
        else if (strcmp(name, "--port") == 0)
            args->port = value;
        else if (strcmp(name, "--cert") == 0)
            args->cert = value;
        else if (strcmp(name, "--key") == 0)
            args->key = value;
        else if (strcmp(name, "--ca") == 0)
            args->ca = value;
        else if (strcmp(name, "--tls") == 0)
            args->tls = value;
        else if (strcmp(name, "--server-name") == 0)
            args->server_name = value;
        else
            usage("unknown option");
    }
    if (!args->host || !args->port || !args->cert || !args->key || !args->ca)
        usage("--host, --port, --cert, --key and --ca are required");
    if (args->tls && strcmp(args->tls, "1.2") != 0 && strcmp(args->tls, "1.3") != 0)
        usage("--tls must be 1.2 or 1.3");
    /* A loopback address becomes localhost, which the lab's hub certificate
     * names: SNI cannot carry an address and Mbed TLS 2.28 matches no IP
     * subjectAltName. */
    if (!args->server_name)
        args->server_name = (strcmp(args->host, "127.0.0.1") == 0 || strcmp(args->host, "::1") == 0)
                                ? "localhost"
                                : args->host;
}

void probe_result_init(struct probe_result *res, const char *stack)
{
    memset(res, 0, sizeof(*res));
    res->stack = stack;
    res->outcome = "rejected";
    res->stage = "connect";
    res->certificate_sent = -1;
}

void probe_fail(struct probe_result *res, const char *outcome, const char *stage,
                const char *fmt, ...)
{
    va_list ap;
    res->outcome = outcome;
    res->stage = stage;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof(res->error), fmt, ap);
    va_end(ap);
}

static void json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

int probe_finish(const struct probe_result *res)
{
    printf("{\"stack\":");
    json_string(res->stack);
    printf(",\"version\":");
    json_string(res->version);
    printf(",\"outcome\":");
    json_string(res->outcome);
    printf(",\"stage\":");
    json_string(res->stage);
    printf(",\"error\":");
    json_string(res->error);
    printf(",\"certificate_sent\":%s}\n",
           res->certificate_sent < 0 ? "null" : res->certificate_sent ? "true" : "false");
    fflush(stdout);
    return strcmp(res->outcome, "delivered") == 0 ? 0 : 1;
}

int probe_connect(const struct probe_args *args, struct probe_result *res)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(args->host, args->port, &hints, &ai);
    if (rc != 0) {
        probe_fail(res, "rejected", "connect", "getaddrinfo: %s", gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    char err[256] = "no address";
    for (struct addrinfo *a = ai; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0)
            continue;
        int flags = fcntl(fd, F_GETFL, 0);
        if (flags >= 0)
            fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int ok = connect(fd, a->ai_addr, a->ai_addrlen) == 0;
        if (!ok && errno == EINPROGRESS) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, PROBE_TIMEOUT_S * 1000) == 1) {
                int soerr = 0;
                socklen_t len = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr == 0)
                    ok = 1;
                else
                    errno = soerr;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (ok) {
            if (flags >= 0)
                fcntl(fd, F_SETFL, flags);
            struct timeval tv = {.tv_sec = PROBE_TIMEOUT_S, .tv_usec = 0};
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
            break;
        }
        snprintf(err, sizeof(err), "connect: %s", strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(ai);
    if (fd < 0)
        probe_fail(res, "rejected", "connect", "%s", err);
    return fd;
}

/* One line source: the plain socket or the TLS stack. */
struct line_src {
    const struct probe_io *io; /* NULL: plain fd */
    int fd;
    unsigned char buf[1024];
    size_t have;
    size_t pos;
    char err[PROBE_ERROR_MAX];
};

static int src_fill(struct line_src *s)
{
    int n;
    s->err[0] = '\0';
    if (s->io) {
        n = s->io->read(s->io->ctx, s->buf, sizeof(s->buf), s->err, sizeof(s->err));
    } else {
        ssize_t r = recv(s->fd, s->buf, sizeof(s->buf), 0);
        if (r < 0)
            snprintf(s->err, sizeof(s->err), "recv: %s", strerror(errno));
        n = (int)r;
    }
    if (n == 0 && s->err[0] == '\0')
        snprintf(s->err, sizeof(s->err), "connection closed by the server");
    if (n <= 0)
        return -1;
    s->have = (size_t)n;
    s->pos = 0;
    return 0;
}

/* Reads one SMTP reply (all its lines). Returns the code, or -1 when the
 * stream failed (s->err says why), or -2 when the reply is malformed. */
static int read_reply(struct line_src *s, char *reply, size_t cap)
{
    size_t len = 0;
    size_t line_start = 0;
    for (;;) {
        if (s->pos >= s->have && src_fill(s) != 0)
            return -1;
        char c = (char)s->buf[s->pos++];
        if (len + 1 >= cap)
            return -2;
        reply[len++] = c;
        reply[len] = '\0';
        if (c != '\n')
            continue;
        size_t line_len = len - line_start;
        if (line_len < 5)
            return -2;
        const char *line = reply + line_start;
        if (line[3] == ' ' || line[3] == '\r') {
            char code[4] = {line[0], line[1], line[2], '\0'};
            char *end = NULL;
            long v = strtol(code, &end, 10);
            if (!end || *end != '\0' || v < 100 || v > 599)
                return -2;
            /* strip the trailing CRLF for the error text */
            while (len > 0 && (reply[len - 1] == '\n' || reply[len - 1] == '\r'))
                reply[--len] = '\0';
            return (int)v;
        }
        if (line[3] != '-')
            return -2;
        line_start = len;
    }
}

static int write_all(struct line_src *s, const char *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        int n;
        s->err[0] = '\0';
        if (s->io) {
            n = s->io->write(s->io->ctx, (const unsigned char *)data + done, len - done,
                             s->err, sizeof(s->err));
        } else {
            ssize_t r = send(s->fd, data + done, len - done, MSG_NOSIGNAL);
            if (r < 0)
                snprintf(s->err, sizeof(s->err), "send: %s", strerror(errno));
            n = (int)r;
        }
        if (n <= 0) {
            if (s->err[0] == '\0')
                snprintf(s->err, sizeof(s->err), "write returned %d", n);
            return -1;
        }
        done += (size_t)n;
    }
    return 0;
}

/* Sends cmd (may be NULL: just read) and expects a reply of class want
 * (2 or 3). Returns 0 on success; fills res otherwise. */
static int step(struct line_src *s, struct probe_result *res, const char *stage,
                const char *cmd, int want, const char *io_outcome)
{
    char reply[PROBE_REPLY_MAX];
    if (cmd && write_all(s, cmd, strlen(cmd)) != 0) {
        probe_fail(res, io_outcome, stage, "%s", s->err);
        return -1;
    }
    int code = read_reply(s, reply, sizeof(reply));
    if (code == -1) {
        probe_fail(res, io_outcome, stage, "%s", s->err);
        return -1;
    }
    if (code == -2) {
        probe_fail(res, "rejected", stage, "malformed SMTP reply");
        return -1;
    }
    if (code / 100 != want) {
        probe_fail(res, "rejected", stage, "%s", reply);
        return -1;
    }
    return 0;
}

int probe_smtp_starttls(int fd, struct probe_result *res)
{
    struct line_src s;
    memset(&s, 0, sizeof(s));
    s.fd = fd;
    if (step(&s, res, "greeting", NULL, 2, "rejected") != 0)
        return -1;
    if (step(&s, res, "ehlo", "EHLO probe.lab.test\r\n", 2, "rejected") != 0)
        return -1;
    if (step(&s, res, "starttls", "STARTTLS\r\n", 2, "rejected") != 0)
        return -1;
    if (s.pos != s.have) {
        probe_fail(res, "rejected", "starttls", "data after the 220 to STARTTLS");
        return -1;
    }
    res->stage = "handshake";
    return 0;
}

int probe_smtp_deliver(const struct probe_io *io, struct probe_result *res)
{
    static struct line_src s;
    memset(&s, 0, sizeof(s));
    s.io = io;
    s.fd = -1;
    static const char message[] =
        "From: <probe@probe.lab.test>\r\n"
        "To: <user@lab.test>\r\n"
        "Subject: umlab client probe\r\n"
        "\r\n"
        "A small message from a real client stack.\r\n"
        ".\r\n";
    if (step(&s, res, "ehlo-tls", "EHLO probe.lab.test\r\n", 2, "tls_failed") != 0)
        return -1;
    if (step(&s, res, "mail", "MAIL FROM:<probe@probe.lab.test>\r\n", 2, "tls_failed") != 0)
        return -1;
    if (step(&s, res, "rcpt", "RCPT TO:<user@lab.test>\r\n", 2, "tls_failed") != 0)
        return -1;
    if (step(&s, res, "data", "DATA\r\n", 3, "tls_failed") != 0)
        return -1;
    if (step(&s, res, "message", message, 2, "tls_failed") != 0)
        return -1;
    res->outcome = "delivered";
    res->stage = "quit";
    /* The message is accepted; a failing QUIT does not undo that. */
    if (step(&s, res, "quit", "QUIT\r\n", 2, "delivered") != 0) {
        res->outcome = "delivered";
        return 0;
    }
    res->stage = "done";
    res->error[0] = '\0';
    return 0;
}

void probe_close(int fd)
{
    if (fd < 0)
        return;
    shutdown(fd, SHUT_WR);
    struct timeval tv = {.tv_sec = 1, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    unsigned char sink[4096];
    for (int i = 0; i < 64; i++) {
        if (recv(fd, sink, sizeof(sink), 0) <= 0)
            break;
    }
    close(fd);
}

void probe_flight_init(struct probe_flight *f)
{
    memset(f, 0, sizeof(*f));
    f->certificate_sent = -1;
}

void probe_flight_feed(struct probe_flight *f, const unsigned char *buf, size_t len)
{
    size_t i = 0;
    while (i < len && !f->done) {
        if (f->hdr_have < 5) {
            f->hdr[f->hdr_have++] = buf[i++];
            if (f->hdr_have == 5) {
                f->record_type = f->hdr[0];
                f->body_left = ((size_t)f->hdr[3] << 8) | f->hdr[4];
                f->frag_have = 0;
                if (f->record_type == 20 || f->record_type == 23)
                    f->done = 1; /* ChangeCipherSpec or TLS 1.3 encrypted: no more plaintext */
                if (f->body_left == 0)
                    f->hdr_have = 0;
            }
            continue;
        }
        size_t take = len - i < f->body_left ? len - i : f->body_left;
        if (f->record_type == 22) {
            for (size_t k = 0; k < take && f->frag_have < sizeof(f->frag); k++)
                f->frag[f->frag_have++] = buf[i + k];
        }
        i += take;
        f->body_left -= take;
        if (f->record_type == 22 && f->frag_have == sizeof(f->frag) && f->frag[0] == 11) {
            size_t list = ((size_t)f->frag[4] << 16) | ((size_t)f->frag[5] << 8) | f->frag[6];
            f->certificate_sent = list > 0;
        }
        if (f->body_left == 0)
            f->hdr_have = 0;
    }
}
