// goverify answers, for each case read as JSON from stdin, whether Go's crypto/x509 — the verifier
// inside containerd, the kubelet and dockerd — accepts a served chain for a host with a given bundle.
// Tests compare registry-trust's own verdicts with these answers.
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"time"
)

type tcase struct {
	Name   string `json:"name"`
	Bundle string `json:"bundle"`
	Chain  string `json:"chain"`
	Host   string `json:"host"`
	Time   string `json:"time"`
}

type answer struct {
	Name    string `json:"name"`
	Trusted bool   `json:"trusted"`
	Error   string `json:"error,omitempty"`
}

func certs(text string) []*x509.Certificate {
	var out []*x509.Certificate
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return out
		}
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func verify(c tcase) answer {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(c.Bundle))
	chain := certs(c.Chain)
	if len(chain) == 0 {
		return answer{c.Name, false, "no parseable leaf"}
	}
	inter := x509.NewCertPool()
	for _, i := range chain[1:] {
		inter.AddCert(i)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: c.Host}
	if c.Time != "" {
		t, err := time.Parse(time.RFC3339, c.Time)
		if err != nil {
			return answer{c.Name, false, err.Error()}
		}
		opts.CurrentTime = t
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return answer{c.Name, false, err.Error()}
	}
	return answer{c.Name, true, ""}
}

func main() {
	var cases []tcase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	out := make([]answer, 0, len(cases))
	for _, c := range cases {
		out = append(out, verify(c))
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		panic(err)
	}
}
