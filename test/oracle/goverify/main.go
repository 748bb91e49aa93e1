// goverify answers, for each case read as JSON from stdin, whether Go's crypto/x509 — the verifier
// inside containerd, the kubelet and dockerd — accepts a served chain for a host with a given bundle,
// and why not, as a reason class. Tests compare registry-trust's own verdicts with these answers.
//
// Options are those of a TLS client: KeyUsages ServerAuth, DNSName (a name or an IP), CurrentTime.
// The bundle and extra intermediates go through AppendCertsFromPEM (unparseable blocks are skipped, as
// Go does); the leaf — the first block of chain — must parse, otherwise the reason is "malformed".
package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"strings"
	"time"
)

type tcase struct {
	Name   string `json:"name"`
	Bundle string `json:"bundle"`
	// Chain is the leaf, then any intermediates, as a server sends them.
	Chain string `json:"chain"`
	// Intermediates are more untrusted certificates (x509-limbo's untrusted_intermediates).
	Intermediates string `json:"intermediates"`
	Host          string `json:"host"`
	Time          string `json:"time"`
}

type answer struct {
	Name    string `json:"name"`
	Trusted bool   `json:"trusted"`
	Reason  string `json:"reason,omitempty"`
	Error   string `json:"error,omitempty"`
}

// reasonClass maps Go's error types onto the classes test/support/goverify.ts shares with our codes.
func reasonClass(err error) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var he x509.HostnameError
	var uc x509.UnhandledCriticalExtension
	switch {
	case errors.As(err, &ua):
		return "unknown-authority"
	case errors.As(err, &he):
		return "hostname"
	case errors.As(err, &uc):
		return "critical-extension"
	case errors.As(err, &ci):
		switch ci.Reason {
		case x509.NotAuthorizedToSign:
			return "not-ca"
		case x509.Expired:
			return "validity"
		case x509.CANotAuthorizedForThisName, x509.UnconstrainedName, x509.NameConstraintsWithoutSANs, x509.TooManyConstraints:
			return "name-constraints"
		case x509.TooManyIntermediates:
			return "path-len"
		case x509.IncompatibleUsage, x509.CANotAuthorizedForExtKeyUsage:
			return "eku"
		case x509.NoValidChains:
			return "policy"
		}
	case strings.Contains(err.Error(), "signature check attempts limit"):
		return "budget"
	}
	return "other"
}

func leafAndRest(text string) (*x509.Certificate, []byte, error) {
	b, rest := pem.Decode([]byte(text))
	if b == nil {
		return nil, nil, errors.New("no PEM block for the leaf")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	return c, rest, err
}

func verify(c tcase) answer {
	leaf, rest, err := leafAndRest(c.Chain)
	if err != nil {
		return answer{c.Name, false, "malformed", err.Error()}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(c.Bundle))
	inter := x509.NewCertPool()
	inter.AppendCertsFromPEM(rest)
	inter.AppendCertsFromPEM([]byte(c.Intermediates))
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: c.Host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	if c.Time != "" {
		t, err := time.Parse(time.RFC3339, c.Time)
		if err != nil {
			return answer{c.Name, false, "other", err.Error()}
		}
		opts.CurrentTime = t
	}
	if _, err := leaf.Verify(opts); err != nil {
		return answer{c.Name, false, reasonClass(err), err.Error()}
	}
	return answer{c.Name, true, "", ""}
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
