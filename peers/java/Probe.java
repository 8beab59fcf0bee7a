// The Java (JSSE) client as a mail client: SMTP, STARTTLS, mutual TLS with
// the JDK's default KeyManagerFactory (SunX509 unless ssl.KeyManagerFactory
// .algorithm says otherwise): it chooses the client alias whose chain has a
// certificate issued by one of the CAs the server listed (every CA matches
// an empty list) and sends an empty Certificate when none does. The probe
// only watches that choice (a delegating key manager records the alias it
// returned); it never chooses. Prints one JSON line (peers/README.md).
// Standard library only.

import java.io.BufferedReader;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.Principal;
import java.security.PrivateKey;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import javax.net.ssl.KeyManager;
import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509ExtendedKeyManager;
import javax.net.ssl.X509KeyManager;

public final class Probe {
    private static final String STACK = "java";
    private static String outcome = "tls_failed";
    private static String stage = "";
    private static String error = "";
    private static Boolean certificateSent = null;

    /** Delegates every call; remembers what the JDK's own choice was. */
    static final class Watching extends X509ExtendedKeyManager {
        private final X509KeyManager inner;
        private volatile Boolean chosen = null;

        Watching(X509KeyManager inner) {
            this.inner = inner;
        }

        private String seen(String alias) {
            if (alias != null) {
                chosen = Boolean.TRUE;
            } else if (chosen == null) {
                chosen = Boolean.FALSE;
            }
            return alias;
        }

        @Override
        public String chooseClientAlias(String[] keyType, Principal[] issuers, Socket socket) {
            return seen(inner.chooseClientAlias(keyType, issuers, socket));
        }

        @Override
        public String chooseEngineClientAlias(String[] keyType, Principal[] issuers, SSLEngine engine) {
            X509ExtendedKeyManager x = inner instanceof X509ExtendedKeyManager
                    ? (X509ExtendedKeyManager) inner : null;
            return seen(x != null ? x.chooseEngineClientAlias(keyType, issuers, engine)
                    : inner.chooseClientAlias(keyType, issuers, null));
        }

        @Override
        public String[] getClientAliases(String keyType, Principal[] issuers) {
            return inner.getClientAliases(keyType, issuers);
        }

        @Override
        public String[] getServerAliases(String keyType, Principal[] issuers) {
            return inner.getServerAliases(keyType, issuers);
        }

        @Override
        public String chooseServerAlias(String keyType, Principal[] issuers, Socket socket) {
            return inner.chooseServerAlias(keyType, issuers, socket);
        }

        @Override
        public X509Certificate[] getCertificateChain(String alias) {
            return inner.getCertificateChain(alias);
        }

        @Override
        public PrivateKey getPrivateKey(String alias) {
            return inner.getPrivateKey(alias);
        }
    }

    private static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\n': b.append("\\n"); break;
                case '\r': b.append("\\r"); break;
                case '\t': b.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }

    private static void emit(int code) {
        String sent = certificateSent == null ? "null" : certificateSent.toString();
        System.out.println("{\"stack\":" + quote(STACK)
                + ",\"version\":" + quote(System.getProperty("java.runtime.version", "unknown"))
                + ",\"outcome\":" + quote(outcome) + ",\"stage\":" + quote(stage)
                + ",\"error\":" + quote(error) + ",\"certificate_sent\":" + sent + "}");
        System.out.flush();
        System.exit(code);
    }

    private static void usage(String why) {
        System.err.println("usage: run --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem"
                + " [--tls 1.2|1.3]: " + why);
        System.exit(2);
    }

    /** The DER blocks of one kind in a PEM file, in order. */
    private static List<byte[]> pem(Path file, String kind) throws IOException {
        String text = Files.readString(file, StandardCharsets.US_ASCII);
        String begin = "-----BEGIN " + kind + "-----";
        String end = "-----END " + kind + "-----";
        List<byte[]> out = new ArrayList<>();
        int at = 0;
        while ((at = text.indexOf(begin, at)) >= 0) {
            int stop = text.indexOf(end, at);
            if (stop < 0) {
                break;
            }
            String body = text.substring(at + begin.length(), stop).replaceAll("\\s", "");
            out.add(Base64.getDecoder().decode(body));
            at = stop + end.length();
        }
        return out;
    }

    private static PrivateKey key(byte[] pkcs8) {
        PKCS8EncodedKeySpec spec = new PKCS8EncodedKeySpec(pkcs8);
        for (String alg : new String[] {"EC", "RSA", "Ed25519", "Ed448", "RSASSA-PSS"}) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(spec);
            } catch (Exception ignored) {
                // try the next algorithm
            }
        }
        usage("the key is no PKCS#8 EC, RSA or EdDSA key");
        return null;
    }

    private static final class Smtp {
        private BufferedReader in;
        private OutputStream out;

        Smtp(Socket s) throws IOException {
            in = new BufferedReader(new InputStreamReader(s.getInputStream(), StandardCharsets.ISO_8859_1));
            out = s.getOutputStream();
        }

        /** Sends a line (unless null), reads the reply, fails unless its code is want. */
        void step(String name, String line, int want) throws IOException {
            stage = name;
            if (line != null) {
                out.write((line + "\r\n").getBytes(StandardCharsets.ISO_8859_1));
                out.flush();
            }
            String first = null;
            while (true) {
                String l = in.readLine();
                if (l == null) {
                    throw new IOException("connection closed by the server");
                }
                if (first == null) {
                    first = l;
                }
                if (l.length() < 4 || l.charAt(3) != '-') {
                    break;
                }
            }
            if (!first.startsWith(Integer.toString(want))) {
                throw new SmtpReply(first);
            }
        }
    }

    static final class SmtpReply extends IOException {
        SmtpReply(String reply) {
            super(reply);
        }
    }

    public static void main(String[] args) throws Exception {
        Map<String, String> opt = new HashMap<>();
        opt.put("--tls", "1.2");
        for (int i = 0; i < args.length; i += 2) {
            if (i + 1 >= args.length || !List.of("--host", "--port", "--cert", "--key", "--ca", "--tls").contains(args[i])) {
                usage("bad argument " + args[i]);
            }
            opt.put(args[i], args[i + 1]);
        }
        for (String need : new String[] {"--host", "--port", "--cert", "--key", "--ca"}) {
            if (!opt.containsKey(need)) {
                usage("missing " + need);
            }
        }
        String host = opt.get("--host");
        int port = 0;
        try {
            port = Integer.parseInt(opt.get("--port"));
        } catch (NumberFormatException e) {
            usage("bad port");
        }
        String protocol = switch (opt.get("--tls")) {
            case "1.2" -> "TLSv1.2";
            case "1.3" -> "TLSv1.3";
            default -> null;
        };
        if (protocol == null) {
            usage("--tls must be 1.2 or 1.3");
        }

        SSLContext context;
        Watching keys;
        try {
            CertificateFactory x509 = CertificateFactory.getInstance("X.509");
            List<Certificate> chain = new ArrayList<>();
            for (byte[] der : pem(Path.of(opt.get("--cert")), "CERTIFICATE")) {
                chain.add(x509.generateCertificate(new ByteArrayInputStream(der)));
            }
            List<byte[]> keyDer = pem(Path.of(opt.get("--key")), "PRIVATE KEY");
            List<byte[]> caDer = pem(Path.of(opt.get("--ca")), "CERTIFICATE");
            if (chain.isEmpty() || keyDer.isEmpty() || caDer.isEmpty()) {
                usage("a PEM file holds no certificate or no PKCS#8 key");
            }
            KeyStore ks = KeyStore.getInstance("PKCS12");
            ks.load(null, null);
            char[] pass = "probe".toCharArray();
            ks.setKeyEntry("probe", key(keyDer.get(0)), pass, chain.toArray(new Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm());
            kmf.init(ks, pass);
            X509KeyManager inner = null;
            for (KeyManager km : kmf.getKeyManagers()) {
                if (km instanceof X509KeyManager) {
                    inner = (X509KeyManager) km;
                }
            }
            if (inner == null) {
                usage("no X509KeyManager from " + kmf.getAlgorithm());
            }
            keys = new Watching(inner);
            KeyStore ts = KeyStore.getInstance("PKCS12");
            ts.load(null, null);
            int n = 0;
            for (byte[] der : caDer) {
                ts.setCertificateEntry("ca" + (n++), x509.generateCertificate(new ByteArrayInputStream(der)));
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            tmf.init(ts);
            context = SSLContext.getInstance("TLS");
            context.init(new KeyManager[] {keys}, tmf.getTrustManagers(), null);
        } catch (IOException | java.security.GeneralSecurityException e) {
            usage(e.toString());
            return;
        }

        Socket plain = new Socket();
        try {
            stage = "connect";
            plain.connect(new InetSocketAddress(host, port), 10_000);
            plain.setSoTimeout(30_000);
            Smtp smtp = new Smtp(plain);
            smtp.step("greeting", null, 220);
            smtp.step("ehlo", "EHLO probe.lab.test", 250);
            smtp.step("starttls", "STARTTLS", 220);
        } catch (IOException e) {
            outcome = "rejected";
            error = e instanceof SmtpReply ? e.getMessage() : e.toString();
            emit(1);
        }
        SSLSocket tls;
        try {
            stage = "handshake";
            tls = (SSLSocket) context.getSocketFactory().createSocket(plain, host, port, true);
            tls.setEnabledProtocols(new String[] {protocol});
            SSLParameters params = tls.getSSLParameters();
            params.setEndpointIdentificationAlgorithm("HTTPS");
            tls.setSSLParameters(params);
            tls.startHandshake();
            certificateSent = keys.chosen;
        } catch (IOException e) {
            certificateSent = keys.chosen;
            error = e.toString();
            emit(1);
            return;
        }
        Smtp secure = null;
        try {
            secure = new Smtp(tls);
            Smtp smtp = secure;
            smtp.step("ehlo-tls", "EHLO probe.lab.test", 250);
            smtp.step("mail", "MAIL FROM:<probe@lab.test>", 250);
            smtp.step("rcpt", "RCPT TO:<hub@lab.test>", 250);
            smtp.step("data", "DATA", 354);
            smtp.step("message", "From: probe@lab.test\r\nTo: hub@lab.test\r\nSubject: java probe\r\n\r\n"
                    + "A small message from the java client.\r\n.", 250);
        } catch (SmtpReply e) {
            outcome = "rejected";
            error = e.getMessage();
            emit(1);
        } catch (IOException e) {
            error = e.toString();
            emit(1);
        }
        outcome = "delivered";
        try {
            secure.step("quit", "QUIT", 221);
            stage = "done";
            tls.close();
        } catch (IOException e) {
            // delivered already; the QUIT reply is a courtesy
        }
        emit(0);
    }
}
