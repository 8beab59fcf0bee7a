/* SMTP + STARTTLS client probe on wolfSSL (5.5.4 as Debian 12 ships it).
 * Default client behaviour: the loaded certificate chain is sent whenever
 * the server asks for one. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/version.h>

#include "probe.h"

struct conn {
    int fd;
    struct probe_flight flight;
};

static int send_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct conn *c = ctx;
    ssize_t n = send(c->fd, buf, (size_t)sz, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_TIMEOUT;
        if (errno == EPIPE)
            return WOLFSSL_CBIO_ERR_CONN_CLOSE;
        if (errno == ECONNRESET)
            return WOLFSSL_CBIO_ERR_CONN_RST;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
    probe_flight_feed(&c->flight, (const unsigned char *)buf, (size_t)n);
    return (int)n;
}

static int recv_cb(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
    (void)ssl;
    struct conn *c = ctx;
    ssize_t n = recv(c->fd, buf, (size_t)sz, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return WOLFSSL_CBIO_ERR_TIMEOUT;
        if (errno == ECONNRESET)
            return WOLFSSL_CBIO_ERR_CONN_RST;
        return WOLFSSL_CBIO_ERR_GENERAL;
    }
    if (n == 0)
        return WOLFSSL_CBIO_ERR_CONN_CLOSE;
    return (int)n;
}

/* The stack's error: its code and its own text, plus the alert received. */
static void describe(WOLFSSL *ssl, int ret, char *out, size_t cap)
{
    int err = wolfSSL_get_error(ssl, ret);
    char text[WOLFSSL_MAX_ERROR_SZ];
    wolfSSL_ERR_error_string_n((unsigned long)err, text, sizeof(text));
    WOLFSSL_ALERT_HISTORY h;
    memset(&h, 0, sizeof(h));
    if (wolfSSL_get_alert_history(ssl, &h) == WOLFSSL_SUCCESS && h.last_rx.level == 2)
        snprintf(out, cap, "%d %s (alert %d received)", err, text, h.last_rx.code);
    else
        snprintf(out, cap, "%d %s", err, text);
}

static int alert_received(WOLFSSL *ssl)
{
    WOLFSSL_ALERT_HISTORY h;
    memset(&h, 0, sizeof(h));
    if (wolfSSL_get_alert_history(ssl, &h) == WOLFSSL_SUCCESS && h.last_rx.level == 2)
        return h.last_rx.code;
    return -1;
}

static int tls_read(void *ctx, unsigned char *buf, size_t len, char *err, size_t errlen)
{
    WOLFSSL *ssl = ctx;
    int ret = wolfSSL_read(ssl, buf, len > 16384 ? 16384 : (int)len);
    if (ret <= 0) {
        if (wolfSSL_get_error(ssl, ret) == WOLFSSL_ERROR_ZERO_RETURN)
            return 0;
        describe(ssl, ret, err, errlen);
        return -1;
    }
    return ret;
}

static int tls_write(void *ctx, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    WOLFSSL *ssl = ctx;
    int ret = wolfSSL_write(ssl, buf, len > 16384 ? 16384 : (int)len);
    if (ret <= 0) {
        describe(ssl, ret, err, errlen);
        return -1;
    }
    return ret;
}

int main(int argc, char **argv)
{
    struct probe_args args;
    struct probe_result res;
    probe_parse_args(argc, argv, &args);
    probe_result_init(&res, "wolfssl");
    snprintf(res.version, sizeof(res.version), "%s", wolfSSL_lib_version());

    int code = 2;
    WOLFSSL_CTX *ctx = NULL;
    WOLFSSL *ssl = NULL;
    struct conn c = {.fd = -1};
    probe_flight_init(&c.flight);
    if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
        fprintf(stderr, "setup: wolfSSL_Init failed\n");
        return 2;
    }
    WOLFSSL_METHOD *method = !args.tls                      ? wolfSSLv23_client_method()
                             : strcmp(args.tls, "1.3") == 0 ? wolfTLSv1_3_client_method()
                                                            : wolfTLSv1_2_client_method();
    ctx = method ? wolfSSL_CTX_new(method) : NULL;
    if (!ctx) {
        fprintf(stderr, "setup: wolfSSL_CTX_new failed\n");
        goto out;
    }
    int ret;
    if ((ret = wolfSSL_CTX_load_verify_locations(ctx, args.ca, NULL)) != WOLFSSL_SUCCESS ||
        (ret = wolfSSL_CTX_use_certificate_chain_file(ctx, args.cert)) != WOLFSSL_SUCCESS ||
        (ret = wolfSSL_CTX_use_PrivateKey_file(ctx, args.key, WOLFSSL_FILETYPE_PEM)) !=
            WOLFSSL_SUCCESS) {
        char text[WOLFSSL_MAX_ERROR_SZ];
        wolfSSL_ERR_error_string_n((unsigned long)ret, text, sizeof(text));
        fprintf(stderr, "setup: loading the CA, chain or key: %d %s\n", ret, text);
        goto out;
    }
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
    wolfSSL_CTX_SetIORecv(ctx, recv_cb);
    wolfSSL_CTX_SetIOSend(ctx, send_cb);
    ssl = wolfSSL_new(ctx);
    if (!ssl || wolfSSL_check_domain_name(ssl, args.server_name) != WOLFSSL_SUCCESS) {
        fprintf(stderr, "setup: wolfSSL_new or the server name failed\n");
        goto out;
    }
    wolfSSL_SetIOReadCtx(ssl, &c);
    wolfSSL_SetIOWriteCtx(ssl, &c);

    c.fd = probe_connect(&args, &res);
    if (c.fd < 0) {
        probe_finish(&res);
        goto out;
    }
    if (probe_smtp_starttls(c.fd, &res) != 0)
        goto done;
    ret = wolfSSL_connect(ssl);
    if (ret != WOLFSSL_SUCCESS) {
        char err[PROBE_ERROR_MAX];
        describe(ssl, ret, err, sizeof(err));
        probe_fail(&res, "tls_failed", "handshake", "%s", err);
    } else {
        struct probe_io io = {.ctx = ssl, .read = tls_read, .write = tls_write};
        if (probe_smtp_deliver(&io, &res) == 0)
            wolfSSL_shutdown(ssl);
    }
done:
    res.certificate_sent = c.flight.certificate_sent;
    /* TLS 1.3 hides the Certificate message: the server's certificate_required
     * alert says none was sent, its bad_certificate or unknown_ca that one was. */
    if (res.certificate_sent < 0) {
        int alert = alert_received(ssl);
        if (alert == PROBE_ALERT_CERTIFICATE_REQUIRED)
            res.certificate_sent = 0;
        else if (alert == PROBE_ALERT_BAD_CERTIFICATE || alert == PROBE_ALERT_UNKNOWN_CA)
            res.certificate_sent = 1; /* the server judged the certificate it got */
    }
    code = probe_finish(&res);
out:
    if (c.fd >= 0)
        probe_close(c.fd);
    if (ssl)
        wolfSSL_free(ssl);
    if (ctx)
        wolfSSL_CTX_free(ctx);
    wolfSSL_Cleanup();
    return code;
}
