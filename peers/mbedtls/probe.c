/* SMTP + STARTTLS client probe on Mbed TLS (2.28 as Debian 12 ships it; the
 * 3.x API differs only where marked). Default client behaviour: the
 * configured certificate is sent whenever the server asks for one. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "probe.h"

struct conn {
    int fd;
    struct probe_flight flight;
};

static int send_cb(void *ctx, const unsigned char *buf, size_t len)
{
    struct conn *c = ctx;
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
    if (n < 0)
        return MBEDTLS_ERR_NET_SEND_FAILED;
    probe_flight_feed(&c->flight, buf, (size_t)n);
    return (int)n;
}

static int recv_cb(void *ctx, unsigned char *buf, size_t len)
{
    struct conn *c = ctx;
    ssize_t n = recv(c->fd, buf, len, 0);
    if (n < 0)
        return (errno == EAGAIN || errno == EWOULDBLOCK) ? MBEDTLS_ERR_SSL_TIMEOUT
                                                         : MBEDTLS_ERR_NET_RECV_FAILED;
    return (int)n;
}

/* The stack's error: its code and its own text, plus the alert received. */
static void describe(mbedtls_ssl_context *ssl, int ret, char *out, size_t cap)
{
    char text[256];
    mbedtls_strerror(ret, text, sizeof(text));
    if (ret == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE && ssl->in_msg)
        snprintf(out, cap, "-0x%04X %s (alert %u received)", (unsigned)-ret, text,
                 (unsigned)ssl->in_msg[1]);
    else
        snprintf(out, cap, "-0x%04X %s", (unsigned)-ret, text);
}

static int tls_read(void *ctx, unsigned char *buf, size_t len, char *err, size_t errlen)
{
    mbedtls_ssl_context *ssl = ctx;
    for (;;) {
        int ret = mbedtls_ssl_read(ssl, buf, len);
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
            return 0;
        if (ret < 0)
            describe(ssl, ret, err, errlen);
        return ret;
    }
}

static int tls_write(void *ctx, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    mbedtls_ssl_context *ssl = ctx;
    for (;;) {
        int ret = mbedtls_ssl_write(ssl, buf, len);
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        if (ret < 0)
            describe(ssl, ret, err, errlen);
        return ret;
    }
}

int main(int argc, char **argv)
{
    struct probe_args args;
    struct probe_result res;
    probe_parse_args(argc, argv, &args);
    probe_result_init(&res, "mbedtls");
    snprintf(res.version, sizeof(res.version), "%s", MBEDTLS_VERSION_STRING);
    if (args.tls && strcmp(args.tls, "1.3") == 0) {
        fprintf(stderr, "Mbed TLS %s has no TLS 1.3 client\n", MBEDTLS_VERSION_STRING);
        return 2;
    }

    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
    mbedtls_x509_crt chain, ca;
    mbedtls_pk_context key;
    mbedtls_ssl_config conf;
    mbedtls_ssl_context ssl;
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
    mbedtls_x509_crt_init(&chain);
    mbedtls_x509_crt_init(&ca);
    mbedtls_pk_init(&key);
    mbedtls_ssl_config_init(&conf);
    mbedtls_ssl_init(&ssl);
    int code = 2;
    int ret;
    char text[256];

    if ((ret = mbedtls_ctr_drbg_seed(&drbg, mbedtls_entropy_func, &entropy, NULL, 0)) != 0 ||
        (ret = mbedtls_x509_crt_parse_file(&chain, args.cert)) != 0 ||
        (ret = mbedtls_x509_crt_parse_file(&ca, args.ca)) != 0 ||
        (ret = mbedtls_pk_parse_keyfile(&key, args.key, NULL)) != 0 ||
        (ret = mbedtls_ssl_config_defaults(&conf, MBEDTLS_SSL_IS_CLIENT,
                                           MBEDTLS_SSL_TRANSPORT_STREAM,
                                           MBEDTLS_SSL_PRESET_DEFAULT)) != 0) {
        mbedtls_strerror(ret, text, sizeof(text));
        fprintf(stderr, "setup: -0x%04X %s\n", (unsigned)-ret, text);
        goto out;
    }
    mbedtls_ssl_conf_rng(&conf, mbedtls_ctr_drbg_random, &drbg);
    mbedtls_ssl_conf_authmode(&conf, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf, &ca, NULL);
    mbedtls_ssl_conf_min_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    if ((ret = mbedtls_ssl_conf_own_cert(&conf, &chain, &key)) != 0 ||
        (ret = mbedtls_ssl_setup(&ssl, &conf)) != 0 ||
        (ret = mbedtls_ssl_set_hostname(&ssl, args.server_name)) != 0) {
        mbedtls_strerror(ret, text, sizeof(text));
        fprintf(stderr, "setup: -0x%04X %s\n", (unsigned)-ret, text);
        goto out;
    }

    struct conn c;
    probe_flight_init(&c.flight);
    c.fd = probe_connect(&args, &res);
    if (c.fd < 0) {
        probe_finish(&res);
        goto out;
    }
    code = 1;
    if (probe_smtp_starttls(c.fd, &res) != 0)
        goto done;
    mbedtls_ssl_set_bio(&ssl, &c, send_cb, recv_cb, NULL);
    for (;;) {
        ret = mbedtls_ssl_handshake(&ssl);
        if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE)
            continue;
        break;
    }
    if (ret != 0) {
        char err[PROBE_ERROR_MAX];
        describe(&ssl, ret, err, sizeof(err));
        uint32_t flags = mbedtls_ssl_get_verify_result(&ssl);
        if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 && flags != (uint32_t)-1) {
            char vinfo[512];
            mbedtls_x509_crt_verify_info(vinfo, sizeof(vinfo), "", flags);
            size_t l = strlen(vinfo);
            while (l > 0 && vinfo[l - 1] == '\n')
                vinfo[--l] = '\0';
            probe_fail(&res, "tls_failed", "handshake", "%s: %s", err, vinfo);
        } else {
            probe_fail(&res, "tls_failed", "handshake", "%s", err);
        }
    } else {
        struct probe_io io = {.ctx = &ssl, .read = tls_read, .write = tls_write};
        if (probe_smtp_deliver(&io, &res) == 0)
            mbedtls_ssl_close_notify(&ssl);
    }
done:
    res.certificate_sent = c.flight.certificate_sent;
    code = probe_finish(&res);
    probe_close(c.fd);
out:
    mbedtls_ssl_free(&ssl);
    mbedtls_ssl_config_free(&conf);
    mbedtls_pk_free(&key);
    mbedtls_x509_crt_free(&ca);
    mbedtls_x509_crt_free(&chain);
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
    return code;
}
