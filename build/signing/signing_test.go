package signing_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kvmmanager/guest-agent/build/signing"
	"github.com/kvmmanager/guest-agent/build/signing/signingtest"
)

var sde = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// armoredSecret writes e's secret key, optionally encrypted with passphrase.
func armoredSecret(t *testing.T, e *openpgp.Entity, passphrase string) string {
	t.Helper()
	if passphrase != "" {
		if err := e.EncryptPrivateKeys([]byte(passphrase), nil); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	w, _ := armor.Encode(&b, openpgp.PrivateKeyType, nil)
	if err := e.SerializePrivateWithoutSigning(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return b.String()
}

func entity(t *testing.T, created time.Time) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity("t", "", "t@example.invalid", &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048, Time: func() time.Time { return created }})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestFromEnv(t *testing.T) {
	old := sde.Add(-time.Hour)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}))
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	pkcs8PEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	var twoBuf bytes.Buffer
	tw, _ := armor.Encode(&twoBuf, openpgp.PrivateKeyType, nil)
	entity(t, old).SerializePrivateWithoutSigning(tw, nil)
	entity(t, old).SerializePrivateWithoutSigning(tw, nil)
	tw.Close()
	two := twoBuf.String()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		pgp     bool
		apk     bool
		summary string // substring of Summary when no error
		err     string // substring of the error
	}{
		{name: "no keys", env: nil, summary: "building UNSIGNED"},
		{name: "OpenPGP only", env: map[string]string{signing.EnvPGPKey: armoredSecret(t, entity(t, old), "")}, pgp: true, summary: "no apk key"},
		{name: "encrypted with passphrase", env: map[string]string{signing.EnvPGPKey: armoredSecret(t, entity(t, old), "pw"), signing.EnvPGPPassphrase: "pw"}, pgp: true},
		{name: "encrypted, no passphrase", env: map[string]string{signing.EnvPGPKey: armoredSecret(t, entity(t, old), "pw")}, err: "is encrypted and KVMMANAGER_SIGNING_PASSPHRASE is empty"},
		{name: "wrong passphrase", env: map[string]string{signing.EnvPGPKey: armoredSecret(t, entity(t, old), "pw"), signing.EnvPGPPassphrase: "nope"}, err: "decrypt key"},
		{name: "key newer than SOURCE_DATE_EPOCH", env: map[string]string{signing.EnvPGPKey: armoredSecret(t, entity(t, sde.Add(time.Hour)), "")}, err: "after SOURCE_DATE_EPOCH"},
		{name: "two secret keys", env: map[string]string{signing.EnvPGPKey: two}, err: "exactly one OpenPGP secret key, found 2"},
		{name: "not a key", env: map[string]string{signing.EnvPGPKey: "hello"}, err: "KVMMANAGER_SIGNING_KEY"},
		{name: "missing key file", env: map[string]string{signing.EnvPGPKeyFile: "/nonexistent/key.asc"}, err: "/nonexistent/key.asc"},
		{name: "apk PKCS#1", env: map[string]string{signing.EnvAPKKey: rsaPEM}, apk: true, summary: "no OpenPGP key"},
		{name: "apk PKCS#8 with name", env: map[string]string{signing.EnvAPKKey: pkcs8PEM, signing.EnvAPKKeyName: "me-1234.rsa.pub"}, apk: true, summary: "me-1234.rsa.pub"},
		{name: "apk bad name", env: map[string]string{signing.EnvAPKKey: rsaPEM, signing.EnvAPKKeyName: "../x"}, err: "ending in .rsa.pub"},
		{name: "apk not PEM", env: map[string]string{signing.EnvAPKKey: "xx"}, err: "no PEM block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := signing.FromEnv(env(tc.env), sde)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if k.HasPGP() != tc.pgp || k.HasAPK() != tc.apk {
				t.Errorf("pgp %v apk %v, want %v %v", k.HasPGP(), k.HasAPK(), tc.pgp, tc.apk)
			}
			if !strings.Contains(k.Summary(), tc.summary) || strings.Count(k.Summary(), "\n") != 0 {
				t.Errorf("summary %q, want one line containing %q", k.Summary(), tc.summary)
			}
		})
	}
}

// TestSignaturesDeterministicAndDated: with an RSA key the same message signs
// to the same bytes, dated SOURCE_DATE_EPOCH, and the signature verifies.
func TestSignaturesDeterministicAndDated(t *testing.T) {
	keys := signingtest.Generate(t, t.TempDir(), sde.Add(-time.Hour))
	k, err := signing.FromEnv(keys.Getenv, sde)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("sha256  file\n")
	var a, b bytes.Buffer
	if err := k.DetachArmored(&a, bytes.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	k.DetachArmored(&b, bytes.NewReader(msg))
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two signatures of one message differ")
	}
	pub, _ := os.ReadFile(keys.PGPPublic)
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(pub))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &packet.Config{Time: func() time.Time { return sde }}
	if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(msg), bytes.NewReader(a.Bytes()), cfg); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	if _, err := openpgp.CheckArmoredDetachedSignature(ring, bytes.NewReader(append(msg, 'x')), bytes.NewReader(a.Bytes()), cfg); err == nil {
		t.Fatal("signature verifies a different message")
	}
	blk, _ := armor.Decode(bytes.NewReader(a.Bytes()))
	p, _ := packet.Read(blk.Body)
	if s, ok := p.(*packet.Signature); !ok || !s.CreationTime.Equal(sde) {
		t.Errorf("signature dated %v, want %v", p, sde)
	}
	var clear bytes.Buffer
	if err := k.ClearSign(&clear, bytes.NewReader(msg)); err != nil || !strings.Contains(clear.String(), "BEGIN PGP SIGNED MESSAGE") {
		t.Errorf("clear-signed: %v\n%s", err, clear.String())
	}
	var none *signing.Keys
	if err := none.DetachArmored(&a, bytes.NewReader(msg)); err == nil {
		t.Error("nil keys signed")
	}
}
