// Package signingtest makes throwaway release keys for tests: an OpenPGP RSA
// key and an RSA key for Alpine, written to a test's directory and handed to
// the build through the environment variables build/signing reads. No
// private key is ever committed.
package signingtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	"github.com/kvmmanager/guest-agent/build/signing"
)

// Keys are the files of one throwaway key set.
type Keys struct {
	PGPSecret string // armored OpenPGP secret key
	PGPPublic string // armored OpenPGP public key
	APKSecret string // PEM RSA private key
	Env       map[string]string
}

// Getenv returns a getenv for signing.FromEnv that sees only the keys.
func (k Keys) Getenv(name string) string { return k.Env[name] }

// Generate writes a new key set under dir. The OpenPGP key is dated created,
// which must not be later than the SOURCE_DATE_EPOCH it will sign at.
func Generate(t testing.TB, dir string, created time.Time) Keys {
	t.Helper()
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoRSA, RSABits: 2048, Time: func() time.Time { return created }}
	e, err := openpgp.NewEntity("kvmmanager test", "throwaway", "test@kvmmanager.invalid", cfg)
	if err != nil {
		t.Fatalf("generate OpenPGP key: %v", err)
	}
	k := Keys{
		PGPSecret: filepath.Join(dir, "signing-key.asc"),
		PGPPublic: filepath.Join(dir, "signing-key.pub.asc"),
		APKSecret: filepath.Join(dir, "apk-key.pem"),
	}
	writeArmored(t, k.PGPSecret, openpgp.PrivateKeyType, func(w armorWriter) error { return e.SerializePrivate(w, cfg) })
	writeArmored(t, k.PGPPublic, openpgp.PublicKeyType, func(w armorWriter) error { return e.Serialize(w) })
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate RSA key: %v", err)
	}
	pemData := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(r)})
	if err := os.WriteFile(k.APKSecret, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	k.Env = map[string]string{signing.EnvPGPKeyFile: k.PGPSecret, signing.EnvAPKKeyFile: k.APKSecret}
	return k
}

type armorWriter interface{ Write([]byte) (int, error) }

func writeArmored(t testing.TB, path, blockType string, body func(armorWriter) error) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := armor.Encode(f, blockType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := body(w); err != nil {
		t.Fatalf("serialize %s: %v", path, err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
