// Package signing loads the optional release keys named by the environment and
// signs release files with them: OpenPGP (detached and clear-signed, for
// SHA256SUMS, the .deb and .rpm and the apt and dnf repository metadata) and
// RSA for Alpine (.apk and APKINDEX). Every signature is dated
// SOURCE_DATE_EPOCH and made without random salt, so that with an RSA or
// Ed25519 key two builds of one commit sign byte-identically.
package signing

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // Alpine's package signatures are RSA over SHA-1
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Environment variables that name the keys. For each key either the *_FILE
// variable names a file or the plain variable holds the key itself (as CI
// secrets do); both unset means no key.
const (
	EnvPGPKey        = "KVMMANAGER_SIGNING_KEY"        // ASCII-armored OpenPGP secret key
	EnvPGPKeyFile    = "KVMMANAGER_SIGNING_KEY_FILE"   // file holding it (armored or binary)
	EnvPGPPassphrase = "KVMMANAGER_SIGNING_PASSPHRASE" // passphrase of an encrypted key
	EnvAPKKey        = "KVMMANAGER_APK_KEY"            // PEM RSA private key (PKCS#1 or PKCS#8)
	EnvAPKKeyFile    = "KVMMANAGER_APK_KEY_FILE"       // file holding it
	EnvAPKKeyName    = "KVMMANAGER_APK_KEY_NAME"       // name in /etc/apk/keys/; default derived from the key
)

// Keys are the loaded release keys. A nil *Keys, or one without a key of
// some kind, signs nothing of that kind.
type Keys struct {
	pgp     *openpgp.Entity
	signer  *packet.PrivateKey // the OpenPGP (sub)key that signs
	rsa     *rsa.PrivateKey
	apkName string
	time    time.Time
}

// FromEnv loads the keys named by the environment (getenv, e.g. os.Getenv).
// Signatures are dated t (SOURCE_DATE_EPOCH); a key created after t is an
// error, since no verifier accepts a signature older than its key.
func FromEnv(getenv func(string) string, t time.Time) (*Keys, error) {
	k := &Keys{time: t.UTC()}
	pgpData, pgpFrom, err := keyMaterial(getenv, EnvPGPKey, EnvPGPKeyFile)
	if err != nil {
		return nil, err
	}
	if pgpData != nil {
		if err := k.loadPGP(pgpData, getenv(EnvPGPPassphrase)); err != nil {
			return nil, fmt.Errorf("signing key from %s: %w", pgpFrom, err)
		}
	}
	rsaData, rsaFrom, err := keyMaterial(getenv, EnvAPKKey, EnvAPKKeyFile)
	if err != nil {
		return nil, err
	}
	if rsaData != nil {
		if k.rsa, err = parseRSA(rsaData); err != nil {
			return nil, fmt.Errorf("apk key from %s: %w", rsaFrom, err)
		}
		k.apkName = getenv(EnvAPKKeyName)
		if k.apkName == "" {
			k.apkName = defaultAPKKeyName(&k.rsa.PublicKey)
		}
		if !strings.HasSuffix(k.apkName, ".rsa.pub") || strings.ContainsAny(k.apkName, "/ ") {
			return nil, fmt.Errorf("%s=%q: want a file name ending in .rsa.pub", EnvAPKKeyName, k.apkName)
		}
	}
	return k, nil
}

func keyMaterial(getenv func(string) string, inline, file string) ([]byte, string, error) {
	if p := getenv(file); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("read key %s=%s: %w", file, p, err)
		}
		return b, file + "=" + p, nil
	}
	if v := getenv(inline); v != "" {
		return []byte(v), inline, nil
	}
	return nil, "", nil
}

func (k *Keys) loadPGP(data []byte, passphrase string) error {
	var (
		list openpgp.EntityList
		err  error
	)
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		list, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
	} else {
		list, err = openpgp.ReadKeyRing(bytes.NewReader(data))
	}
	if err != nil {
		return fmt.Errorf("read OpenPGP key: %w", err)
	}
	var secret []*openpgp.Entity
	for _, e := range list {
		if e.PrivateKey != nil {
			secret = append(secret, e)
		}
	}
	if len(secret) != 1 {
		return fmt.Errorf("want exactly one OpenPGP secret key, found %d", len(secret))
	}
	e := secret[0]
	if created := e.PrimaryKey.CreationTime; created.After(k.time) {
		return fmt.Errorf("key %X was created %s, after SOURCE_DATE_EPOCH %s, the date of every signature: use a key made before the commit",
			e.PrimaryKey.Fingerprint, created.UTC().Format(time.RFC3339), k.time.Format(time.RFC3339))
	}
	key, ok := e.SigningKey(k.time)
	if !ok {
		return fmt.Errorf("key %X has no signing key valid at %s", e.PrimaryKey.Fingerprint, k.time.Format(time.RFC3339))
	}
	if key.PrivateKey == nil {
		return fmt.Errorf("key %X: the signing key's secret part is missing", e.PrimaryKey.Fingerprint)
	}
	if key.PrivateKey.Encrypted {
		if passphrase == "" {
			return fmt.Errorf("key %X is encrypted and %s is empty", e.PrimaryKey.Fingerprint, EnvPGPPassphrase)
		}
		if err := key.PrivateKey.Decrypt([]byte(passphrase)); err != nil {
			return fmt.Errorf("decrypt key %X: %w", e.PrimaryKey.Fingerprint, err)
		}
	}
	k.pgp, k.signer = e, key.PrivateKey
	return nil
}

func parseRSA(data []byte) (*rsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block (want an RSA private key as written by openssl genrsa or abuild-keygen)")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", block.Type, err)
	}
	r, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s holds a %T, want RSA", block.Type, k)
	}
	return r, nil
}

// defaultAPKKeyName names the key as abuild-keygen does (<name>-<8 hex>.rsa.pub),
// from the public key's hash so that a new key gets a new name.
func defaultAPKKeyName(pub *rsa.PublicKey) string {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return "kvmmanager-agent-" + hex.EncodeToString(sum[:4]) + ".rsa.pub"
}

// HasPGP reports whether an OpenPGP key is loaded.
func (k *Keys) HasPGP() bool { return k != nil && k.pgp != nil }

// HasAPK reports whether an RSA key for Alpine is loaded.
func (k *Keys) HasAPK() bool { return k != nil && k.rsa != nil }

// Time is the date of every signature.
func (k *Keys) Time() time.Time { return k.time }

// Fingerprint is the OpenPGP primary key's fingerprint in upper-case hex.
func (k *Keys) Fingerprint() string {
	if !k.HasPGP() {
		return ""
	}
	return fmt.Sprintf("%X", k.pgp.PrimaryKey.Fingerprint)
}

// APKKeyName is the file name Alpine looks the key up by in /etc/apk/keys/.
func (k *Keys) APKKeyName() string {
	if !k.HasAPK() {
		return ""
	}
	return k.apkName
}

// Summary is the one line a build prints about signing.
func (k *Keys) Summary() string {
	var parts []string
	if k.HasPGP() {
		parts = append(parts, "OpenPGP key "+k.Fingerprint()+" (SHA256SUMS, deb, rpm, apt and dnf repositories)")
	}
	if k.HasAPK() {
		parts = append(parts, "RSA key "+k.apkName+" (apk, APKINDEX)")
	}
	switch {
	case len(parts) == 0:
		return fmt.Sprintf("signing: no keys (%s, %s unset): building UNSIGNED", EnvPGPKey, EnvAPKKey)
	case !k.HasPGP():
		parts = append(parts, "no OpenPGP key: SHA256SUMS, deb, rpm and repositories unsigned")
	case !k.HasAPK():
		parts = append(parts, "no apk key: apk and APKINDEX unsigned")
	}
	return "signing: " + strings.Join(parts, "; ") + ", dated " + k.time.Format(time.RFC3339)
}

func (k *Keys) config() *packet.Config {
	deterministic := false
	return &packet.Config{
		DefaultHash:                           crypto.SHA256,
		Time:                                  func() time.Time { return k.time },
		SigningKeyId:                          k.signer.KeyId,
		NonDeterministicSignaturesViaNotation: &deterministic,
	}
}

func (k *Keys) needPGP(what string) error {
	if !k.HasPGP() {
		return fmt.Errorf("sign %s: no OpenPGP key loaded", what)
	}
	return nil
}

// DetachArmored writes an ASCII-armored detached signature of message to w
// (gpg --verify sig file).
func (k *Keys) DetachArmored(w io.Writer, message io.Reader) error {
	if err := k.needPGP("detached"); err != nil {
		return err
	}
	if err := openpgp.ArmoredDetachSign(w, k.pgp, message, k.config()); err != nil {
		return fmt.Errorf("OpenPGP detached signature: %w", err)
	}
	return nil
}

// Detach returns a binary detached signature of message (what rpm keeps in
// its signature header).
func (k *Keys) Detach(message io.Reader) ([]byte, error) {
	if err := k.needPGP("detached"); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := openpgp.DetachSign(&b, k.pgp, message, k.config()); err != nil {
		return nil, fmt.Errorf("OpenPGP detached signature: %w", err)
	}
	return b.Bytes(), nil
}

// ClearSign writes message clear-signed to w (apt's InRelease).
func (k *Keys) ClearSign(w io.Writer, message io.Reader) error {
	if err := k.needPGP("clear-signed"); err != nil {
		return err
	}
	pt, err := clearsign.Encode(w, k.signer, k.config())
	if err != nil {
		return fmt.Errorf("OpenPGP clear signature: %w", err)
	}
	if _, err := io.Copy(pt, message); err != nil {
		return fmt.Errorf("OpenPGP clear signature: %w", err)
	}
	if err := pt.Close(); err != nil {
		return fmt.Errorf("OpenPGP clear signature: %w", err)
	}
	return nil
}

// PublicKeyArmored writes the OpenPGP public key, ASCII-armored (for apt's
// signed-by, dnf's gpgkey, gpg --import).
func (k *Keys) PublicKeyArmored(w io.Writer) error {
	if err := k.needPGP("public key"); err != nil {
		return err
	}
	aw, err := armor.Encode(w, openpgp.PublicKeyType, nil)
	if err != nil {
		return fmt.Errorf("armor public key: %w", err)
	}
	if err := k.pgp.Serialize(aw); err != nil {
		return fmt.Errorf("serialize public key: %w", err)
	}
	if err := aw.Close(); err != nil {
		return fmt.Errorf("armor public key: %w", err)
	}
	_, err = io.WriteString(w, "\n")
	return err
}

// APKSignDigest signs the SHA-1 digest of a gzip stream as apk does
// (RSA PKCS#1 v1.5 over SHA-1; the .SIGN.RSA.<key name> member).
func (k *Keys) APKSignDigest(digest []byte) ([]byte, error) {
	if !k.HasAPK() {
		return nil, errors.New("sign apk: no RSA key loaded")
	}
	if len(digest) != sha1.Size {
		return nil, fmt.Errorf("sign apk: digest is %d bytes, want SHA-1's %d", len(digest), sha1.Size)
	}
	sig, err := rsa.SignPKCS1v15(nil, k.rsa, crypto.SHA1, digest)
	if err != nil {
		return nil, fmt.Errorf("sign apk: %w", err)
	}
	return sig, nil
}

// APKPublicKeyPEM is the public key as /etc/apk/keys/<APKKeyName> holds it.
func (k *Keys) APKPublicKeyPEM() ([]byte, error) {
	if !k.HasAPK() {
		return nil, errors.New("apk public key: no RSA key loaded")
	}
	der, err := x509.MarshalPKIXPublicKey(&k.rsa.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("apk public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
