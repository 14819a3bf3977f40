package packages

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/kvmmanager/guest-agent/build/version"
)

// FormatVersion turns a semantic version into the version string of one
// package format, keeping each format's ordering: a pre-release sorts before
// its release, and builds after a tag ("+N.gHASH") sort after it.
//
//	semver              deb / rpm            apk
//	1.2.0               1.2.0                1.2.0
//	1.2.0-rc.1          1.2.0~rc.1           1.2.0_rc1
//	0.0.0-dev+abc1234   0.0.0~dev+abc1234    0.0.0_alpha~abc1234
//	1.2.0+3.gabc1234    1.2.0+3.gabc1234     1.2.0_p3~abc1234
//
// apk only knows the pre-release words alpha, beta, pre and rc; any other
// ("dev") becomes alpha. Build metadata that is neither a commit hash nor
// "N.gHASH" has no apk form and is left out there.
func FormatVersion(format, v string) (string, error) {
	p, err := version.Split(v)
	if err != nil {
		return "", err
	}
	switch format {
	case "deb":
		// A "-" would start a Debian revision: use "." instead.
		return p.Core + prefixed("~", strings.ReplaceAll(p.Prerelease, "-", ".")) + prefixed("+", strings.ReplaceAll(p.Metadata, "-", ".")), nil
	case "rpm":
		// rpm forbids "-" in a version.
		return p.Core + prefixed("~", strings.ReplaceAll(p.Prerelease, "-", "_")) + prefixed("+", strings.ReplaceAll(p.Metadata, "-", "_")), nil
	case "apk":
		return p.Core + apkPrerelease(p.Prerelease) + apkMetadata(p.Metadata), nil
	}
	return "", fmt.Errorf("no version format for package format %q", format)
}

func prefixed(sep, s string) string {
	if s == "" {
		return ""
	}
	return sep + s
}

var (
	apkPreRe     = regexp.MustCompile(`^(alpha|beta|pre|rc)\.?(\d*)$`)
	apkDigitsRe  = regexp.MustCompile(`\d+`)
	apkAfterTag  = regexp.MustCompile(`^(\d+)\.g([0-9a-f]+)$`)
	apkCommitRe  = regexp.MustCompile(`^[0-9a-f]+$`)
	apkNonDigits = regexp.MustCompile(`\D`)
)

func apkPrerelease(pre string) string {
	if pre == "" {
		return ""
	}
	pre = strings.ToLower(pre)
	if m := apkPreRe.FindStringSubmatch(pre); m != nil {
		return "_" + m[1] + m[2]
	}
	// Keep the first number, if any ("dev.3" -> "_alpha3").
	return "_alpha" + apkNonDigits.ReplaceAllString(apkDigitsRe.FindString(pre), "")
}

func apkMetadata(meta string) string {
	if m := apkAfterTag.FindStringSubmatch(meta); m != nil {
		return "_p" + m[1] + "~" + m[2]
	}
	if apkCommitRe.MatchString(meta) {
		return "~" + meta
	}
	return ""
}
