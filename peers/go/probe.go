// The Go crypto/tls client as a mail client: SMTP, STARTTLS, mutual TLS with
// Go's own client-certificate selection (tls.Config.Certificates, no
// GetClientCertificate: the stack sends the first chain whose
// CertificateRequestInfo.SupportsCertificate accepts it, which walks the
// chain's issuers against the CA list, else an empty Certificate), then one
// message. Prints one JSON line (peers/README.md). Standard library only.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"runtime"
	"sync"
	"time"
)

type result struct {
	Stack           string `json:"stack"`
	Version         string `json:"version"`
	Outcome         string `json:"outcome"`
	Stage           string `json:"stage"`
	Error           string `json:"error"`
	CertificateSent *bool  `json:"certificate_sent"`
}

// recorder watches the client's own TLS records: in TLS 1.2 its Certificate
// message travels in plaintext, so whether it carried a certificate is read
// off the bytes Go writes, not guessed.
type recorder struct {
	net.Conn
	mu        sync.Mutex
	buf       []byte
	plaintext bool // false once ChangeCipherSpec went out
	stream    []byte
	sent      *bool
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	r.observe(p)
	r.mu.Unlock()
	return r.Conn.Write(p)
}

func (r *recorder) observe(p []byte) {
	if !r.plaintext {
		return
	}
	r.buf = append(r.buf, p...)
	for len(r.buf) >= 5 {
		n := int(r.buf[3])<<8 | int(r.buf[4])
		if len(r.buf) < 5+n {
			return
		}
		typ, payload := r.buf[0], r.buf[5:5+n]
		r.buf = r.buf[5+n:]
		if typ == 20 { // change_cipher_spec: what follows is encrypted
			r.plaintext = false
			return
		}
		if typ != 22 {
			continue
		}
		r.stream = append(r.stream, payload...)
		for len(r.stream) >= 4 {
			m := int(r.stream[1])<<16 | int(r.stream[2])<<8 | int(r.stream[3])
			if len(r.stream) < 4+m {
				break
			}
			if r.stream[0] == 11 && m >= 3 { // Certificate
				list := int(r.stream[4])<<16 | int(r.stream[5])<<8 | int(r.stream[6])
				sent := list > 0
				r.sent = &sent
			}
			r.stream = r.stream[4+m:]
		}
	}
}

func (r *recorder) certificateSent() *bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent
}

var res = result{Stack: "go", Version: runtime.Version(), Outcome: "tls_failed"}

func emit(code int) {
	line, _ := json.Marshal(res)
	fmt.Println(string(line))
	os.Exit(code)
}

func setup(why string) {
	fmt.Fprintln(os.Stderr, "usage: run --host H --port P --cert CHAIN.pem --key KEY.pem --ca CA.pem [--tls 1.2|1.3]: "+why)
	os.Exit(2)
}

func main() {
	host := flag.String("host", "", "server address")
	port := flag.Int("port", 0, "server port")
	certFile := flag.String("cert", "", "client chain, PEM, leaf first")
	keyFile := flag.String("key", "", "client key, PKCS#8 PEM")
	caFile := flag.String("ca", "", "CA that verifies the server, PEM")
	version := flag.String("tls", "1.2", "TLS version: 1.2 or 1.3")
	flag.Usage = func() { setup("bad arguments") }
	flag.Parse()
	if *host == "" || *port <= 0 || *port > 65535 || *certFile == "" || *keyFile == "" || *caFile == "" || flag.NArg() > 0 {
		setup("missing or bad arguments")
	}
	var tlsVersion uint16
	switch *version {
	case "1.2":
		tlsVersion = tls.VersionTLS12
	case "1.3":
		tlsVersion = tls.VersionTLS13
	default:
		setup("--tls must be 1.2 or 1.3")
	}
	chain, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		setup(err.Error())
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		setup(err.Error())
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		setup("no certificate in " + *caFile)
	}
	config := &tls.Config{
		ServerName:   *host,
		RootCAs:      roots,
		Certificates: []tls.Certificate{chain},
		MinVersion:   tlsVersion,
		MaxVersion:   tlsVersion,
	}
	addr := net.JoinHostPort(*host, fmt.Sprint(*port))
	deadline := time.Now().Add(30 * time.Second)

	res.Stage = "connect"
	raw, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		res.Outcome, res.Error = "rejected", err.Error()
		emit(1)
	}
	_ = raw.SetDeadline(deadline)
	text := textproto.NewConn(raw)
	step := func(stage string, code int, cmd string) {
		res.Stage = stage
		if cmd != "" {
			if err := text.PrintfLine("%s", cmd); err != nil {
				fail(err)
			}
		}
		if _, _, err := text.ReadResponse(code); err != nil {
			fail(err)
		}
	}
	step("greeting", 220, "")
	step("ehlo", 250, "EHLO probe.lab.test")
	step("starttls", 220, "STARTTLS")

	res.Stage = "handshake"
	rec := &recorder{Conn: raw, plaintext: tlsVersion == tls.VersionTLS12}
	conn := tls.Client(rec, config)
	err = conn.Handshake()
	res.CertificateSent = rec.certificateSent()
	if err != nil {
		res.Error = err.Error()
		emit(1)
	}
	text = textproto.NewConn(conn)
	step("ehlo-tls", 250, "EHLO probe.lab.test")
	res.CertificateSent = rec.certificateSent()
	step("mail", 250, "MAIL FROM:<probe@lab.test>")
	step("rcpt", 250, "RCPT TO:<hub@lab.test>")
	step("data", 354, "DATA")
	res.Stage = "message"
	w := text.DotWriter()
	fmt.Fprintf(w, "From: probe@lab.test\nTo: hub@lab.test\nSubject: %s probe\n\nA small message from the %s client.\n", res.Stack, res.Stack)
	if err := w.Close(); err != nil {
		fail(err)
	}
	if _, _, err := text.ReadResponse(250); err != nil {
		fail(err)
	}
	res.Outcome, res.Stage = "delivered", "quit"
	_ = text.PrintfLine("QUIT")
	_, _, _ = text.ReadResponse(221)
	res.Stage = "done"
	emit(0)
}

// fail ends the run: an SMTP error reply is a rejection; anything else
// (an alert, a closed connection) after STARTTLS is the TLS session failing.
func fail(err error) {
	res.Error = err.Error()
	var proto *textproto.Error
	if errors.As(err, &proto) || res.Stage == "greeting" || res.Stage == "ehlo" || res.Stage == "starttls" {
		res.Outcome = "rejected"
	} else {
		res.Outcome = "tls_failed"
	}
	emit(1)
}
