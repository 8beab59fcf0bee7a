/* Shared part of the C client probes (mbedtls, wolfssl, nss): arguments,
 * the TCP connection, the SMTP dialogue before and after STARTTLS, a watcher
 * of the client's own TLS 1.2 flight (did it send a certificate?) and the
 * one JSON line each probe prints. The TLS part stays in each stack's file. */
#ifndef UMLAB_PROBE_H
#define UMLAB_PROBE_H

#include <stddef.h>

/* Seconds allowed for connect and for each read or write. */
#define PROBE_TIMEOUT_S 10
/* Largest SMTP reply kept (longer replies are a protocol error). */
#define PROBE_REPLY_MAX 4096
/* Longest error text kept. */
#define PROBE_ERROR_MAX 1024

/* Command line: --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem
 * [--tls 1.2|1.3] [--server-name NAME]. */
struct probe_args {
    const char *host;
    const char *port;
    const char *cert;
    const char *key;
    const char *ca;
    /* "1.2" or "1.3"; NULL when not given (the stack's default range). */
    const char *tls;
    /* The name the server certificate must carry; the host when not given. */
    const char *server_name;
};

/* What the probe reports. */
struct probe_result {
    const char *stack;
    char version[64];
    /* "delivered", "tls_failed", "rejected" */
    const char *outcome;
    /* Where it stopped: connect, greeting, ehlo, starttls, handshake,
     * ehlo-tls, mail, rcpt, data, message, quit, done. */
    const char *stage;
    char error[PROBE_ERROR_MAX];
    /* 1 sent, 0 withheld, -1 unknown */
    int certificate_sent;
};

/* Reading and writing once TLS is up: return bytes moved, 0 at end of
 * stream, < 0 on error (the stack's error text then goes to err). */
struct probe_io {
    void *ctx;
    int (*read)(void *ctx, unsigned char *buf, size_t len, char *err, size_t errlen);
    int (*write)(void *ctx, const unsigned char *buf, size_t len, char *err, size_t errlen);
};

/* Parses argv; prints usage and exits 2 on error. */
void probe_parse_args(int argc, char **argv, struct probe_args *args);

/* Initialises a result for this stack. */
void probe_result_init(struct probe_result *res, const char *stack);

/* Sets stage, outcome and error (printf-style). */
void probe_fail(struct probe_result *res, const char *outcome, const char *stage,
                const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Prints the JSON line. Returns the exit code: 0 delivered, 1 otherwise. */
int probe_finish(const struct probe_result *res);

/* Connects with the timeout; returns the socket or -1 (result filled in). */
int probe_connect(const struct probe_args *args, struct probe_result *res);

/* Plain SMTP until the server's 220 to STARTTLS. Returns 0 when TLS may
 * start, -1 otherwise (result filled in). */
int probe_smtp_starttls(int fd, struct probe_result *res);

/* SMTP over TLS: EHLO, MAIL, RCPT, DATA, message, QUIT. Returns 0 when the
 * message was accepted (outcome delivered), -1 otherwise (result filled). A
 * failure of the stack's read or write is tls_failed, a negative reply is
 * rejected. */
int probe_smtp_deliver(const struct probe_io *io, struct probe_result *res);

/* Closes the socket after sending FIN and reading what the server still
 * sends (at most 1 s): a reset from unread data would hide the alert the
 * client sent from the server. */
void probe_close(int fd);

/* Watches the records the client sends, for its TLS 1.2 Certificate
 * message: feed it every byte written to the socket. */
struct probe_flight {
    unsigned char hdr[5];
    size_t hdr_have;
    size_t body_left;
    int record_type;
    /* start of the current handshake record's fragment (first 7 bytes are
     * enough to read a Certificate message's header and list length) */
    unsigned char frag[7];
    size_t frag_have;
    int done;
    /* 1 certificate sent, 0 empty Certificate, -1 not seen */
    int certificate_sent;
};

void probe_flight_init(struct probe_flight *f);
void probe_flight_feed(struct probe_flight *f, const unsigned char *buf, size_t len);

/* The description code of a TLS alert name such as certificate_required
 * (116): used to decide certificate_sent=false from the server's alert. */
#define PROBE_ALERT_CERTIFICATE_REQUIRED 116
/* bad_certificate (42) and unknown_ca (48) from the server: it got one. */
#define PROBE_ALERT_BAD_CERTIFICATE 42
#define PROBE_ALERT_UNKNOWN_CA 48

#endif
