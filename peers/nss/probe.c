/* SMTP + STARTTLS client probe on NSS. The client certificate is chosen as
 * an NSS application without a nickname does: NSS_GetClientAuthData with a
 * NULL nickname walks each user certificate's chain in the database and
 * picks one whose chain holds an issuer the server listed (any, when the
 * list is empty); none found, it sends an empty Certificate.
 *
 * usage: probe --db DIR + the common options (run makes DIR with certutil
 * and pk12util from the PEM files). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <nspr.h>
#include <nss.h>
#include <private/pprio.h>
#include <ssl.h>
#include <sslerr.h>
#include <sslproto.h>

#include "probe.h"

/* What the client-auth hook saw and decided. */
struct auth_seen {
    int called;
    int sent;
    int names;
};

static SECStatus client_auth(void *arg, PRFileDesc *fd, CERTDistNames *ca_names,
                             CERTCertificate **cert, SECKEYPrivateKey **key)
{
    struct auth_seen *seen = arg;
    seen->called = 1;
    seen->names = ca_names ? ca_names->nnames : 0;
    SECStatus rv = NSS_GetClientAuthData(NULL, fd, ca_names, cert, key);
    seen->sent = rv == SECSuccess;
    return rv;
}

/* The stack's error: its name and its own text. */
static void describe(char *out, size_t cap)
{
    PRErrorCode err = PR_GetError();
    const char *name = PR_ErrorToName(err);
    const char *text = PR_ErrorToString(err, PR_LANGUAGE_I_DEFAULT);
    snprintf(out, cap, "%s (%d): %s", name ? name : "?", (int)err, text ? text : "");
}

static int tls_read(void *ctx, unsigned char *buf, size_t len, char *err, size_t errlen)
{
    PRInt32 n = PR_Recv(ctx, buf, (PRInt32)(len > 16384 ? 16384 : len), 0,
                        PR_SecondsToInterval(PROBE_TIMEOUT_S));
    if (n < 0)
        describe(err, errlen);
    return n;
}

static int tls_write(void *ctx, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    PRInt32 n = PR_Send(ctx, buf, (PRInt32)(len > 16384 ? 16384 : len), 0,
                        PR_SecondsToInterval(PROBE_TIMEOUT_S));
    if (n < 0)
        describe(err, errlen);
    return n;
}

int main(int argc, char **argv)
{
    const char *db = NULL;
    if (argc >= 3 && strcmp(argv[1], "--db") == 0) {
        db = argv[2];
        argv[2] = argv[0];
        argv += 2;
        argc -= 2;
    }
    struct probe_args args;
    struct probe_result res;
    probe_parse_args(argc, argv, &args);
    if (!db) {
        fprintf(stderr, "--db DIR comes first\n");
        return 2;
    }
    probe_result_init(&res, "nss");

    if (NSS_Init(db) != SECSuccess) {
        char err[PROBE_ERROR_MAX];
        describe(err, sizeof(err));
        fprintf(stderr, "setup: NSS_Init(%s): %s\n", db, err);
        return 2;
    }
    snprintf(res.version, sizeof(res.version), "%s", NSS_GetVersion());
    int code = 2;
    PRFileDesc *tcp = NULL, *ssl = NULL;
    struct auth_seen seen = {0, 0, 0};
    if (NSS_SetDomesticPolicy() != SECSuccess) {
        fprintf(stderr, "setup: NSS_SetDomesticPolicy failed\n");
        goto out;
    }
    int fd = probe_connect(&args, &res);
    if (fd < 0) {
        probe_finish(&res);
        goto out;
    }
    code = 1;
    if (probe_smtp_starttls(fd, &res) != 0) {
        code = probe_finish(&res);
        probe_close(fd);
        goto out;
    }
    tcp = PR_ImportTCPSocket(fd);
    ssl = tcp ? SSL_ImportFD(NULL, tcp) : NULL;
    if (!ssl) {
        char err[PROBE_ERROR_MAX];
        describe(err, sizeof(err));
        fprintf(stderr, "setup: importing the socket: %s\n", err);
        if (tcp)
            PR_Close(tcp);
        else
            close(fd);
        code = 2;
        goto out;
    }
    SSLVersionRange range = {SSL_LIBRARY_VERSION_TLS_1_2, SSL_LIBRARY_VERSION_TLS_1_3};
    if (args.tls && strcmp(args.tls, "1.2") == 0)
        range.max = SSL_LIBRARY_VERSION_TLS_1_2;
    if (args.tls && strcmp(args.tls, "1.3") == 0)
        range.min = SSL_LIBRARY_VERSION_TLS_1_3;
    if (SSL_OptionSet(ssl, SSL_SECURITY, PR_TRUE) != SECSuccess ||
        SSL_OptionSet(ssl, SSL_HANDSHAKE_AS_CLIENT, PR_TRUE) != SECSuccess ||
        SSL_VersionRangeSet(ssl, &range) != SECSuccess ||
        SSL_SetURL(ssl, args.server_name) != SECSuccess ||
        SSL_GetClientAuthDataHook(ssl, client_auth, &seen) != SECSuccess ||
        SSL_ResetHandshake(ssl, PR_FALSE) != SECSuccess) {
        char err[PROBE_ERROR_MAX];
        describe(err, sizeof(err));
        fprintf(stderr, "setup: configuring the socket: %s\n", err);
        code = 2;
        goto close;
    }
    if (SSL_ForceHandshakeWithTimeout(ssl, PR_SecondsToInterval(PROBE_TIMEOUT_S)) != SECSuccess) {
        char err[PROBE_ERROR_MAX];
        describe(err, sizeof(err));
        probe_fail(&res, "tls_failed", "handshake", "%s", err);
    } else {
        struct probe_io io = {.ctx = ssl, .read = tls_read, .write = tls_write};
        probe_smtp_deliver(&io, &res);
    }
    if (seen.called)
        res.certificate_sent = seen.sent;
    else if (strstr(res.error, "SSL_ERROR_RX_CERTIFICATE_REQUIRED_ALERT"))
        res.certificate_sent = 0;
    code = probe_finish(&res);
close:
    /* FIN, then read what the server still sends, as probe_close does. */
    PR_Shutdown(ssl, PR_SHUTDOWN_SEND);
    {
        unsigned char sink[4096];
        for (int i = 0; i < 64; i++) {
            if (PR_Recv(ssl, sink, sizeof(sink), 0, PR_SecondsToInterval(1)) <= 0)
                break;
        }
    }
    PR_Close(ssl);
out:
    SSL_ClearSessionCache();
    if (NSS_Shutdown() != SECSuccess)
        fprintf(stderr, "NSS_Shutdown: objects still referenced\n");
    return code;
}
