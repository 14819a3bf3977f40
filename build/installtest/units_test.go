package installtest

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

const (
	portPath      = "/dev/virtio-ports/org.kvmmanager.agent.0"
	qgaPortPath   = "/dev/virtio-ports/org.qemu.guest_agent.0"
	unitName      = "kvmmanager-agent.service"
	deviceUnit    = `dev-virtio\x2dports-org.kvmmanager.agent.0.device`
	qgaDeviceUnit = `dev-virtio\x2dports-org.qemu.guest_agent.0.device`
)

// unitFile maps "Section.Key" to the values of a systemd unit file.
func unitFile(t *testing.T, p string) map[string][]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: malformed line %q", p, line)
			}
			key := section + "." + strings.TrimSpace(k)
			out[key] = append(out[key], strings.TrimSpace(v))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnitActivation checks the contract the distro VM tests rely on: the
// unit starts with either port's device unit and never without one (OR-ed
// conditions, no BindsTo= that would stop it when one of two ports goes),
// comes after qemu-ga, restarts calmly, is not pulled in by
// multi-user.target, and has no sandboxing that hides /tmp or /etc.
func TestUnitActivation(t *testing.T) {
	u := unitFile(t, repoPath("packaging/systemd/"+unitName))
	want := map[string]string{
		"Unit.BindsTo":             "",
		"Unit.ConditionPathExists": "|" + portPath + " |" + qgaPortPath,
		"Unit.After":               deviceUnit + " " + qgaDeviceUnit + " qemu-guest-agent.service",
		"Service.Restart":          "always",
		"Install.WantedBy":         deviceUnit + " " + qgaDeviceUnit,
		"Service.ExecStart":        "/usr/bin/kvmmanager-agent --config /etc/kvmmanager-agent/config.json",
	}
	for k, v := range want {
		if got := strings.Join(u[k], " "); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if rs := strings.Join(u["Service.RestartSec"], ""); rs == "" || rs == "0" || rs == "0s" {
		t.Errorf("RestartSec = %q: a crashing agent would restart in a tight loop", rs)
	}
	for _, k := range []string{"Service.PrivateTmp", "Service.ProtectSystem", "Service.ProtectHome", "Service.ReadOnlyPaths", "Service.PrivateDevices", "Service.DynamicUser"} {
		if v, ok := u[k]; ok {
			t.Errorf("%s=%v: the agent must see the real /tmp, /etc and devices", k, v)
		}
	}
	for _, k := range []string{"Install.WantedBy", "Install.RequiredBy", "Install.Alias"} {
		for _, v := range u[k] {
			if strings.Contains(v, "multi-user.target") || strings.Contains(v, "default.target") {
				t.Errorf("%s=%s: udev starts the agent; enabling it at boot would fail without the port", k, v)
			}
		}
	}
}

// TestDeviceUnitName checks the escaped device unit name against
// systemd-escape, so a typo in the \x2d escape cannot slip through.
func TestDeviceUnitName(t *testing.T) {
	testenv.NeedCommands(t, "systemd-escape")
	for path, unit := range map[string]string{portPath: deviceUnit, qgaPortPath: qgaDeviceUnit} {
		out, err := exec.Command("systemd-escape", "--path", "--suffix=device", path).Output()
		if err != nil {
			t.Fatalf("systemd-escape: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != unit {
			t.Errorf("systemd-escape --path %s = %q, unit uses %q", path, got, unit)
		}
	}
}

// udevToken is one KEY{attr}OP"value" token of a udev rule.
var udevToken = regexp.MustCompile(`^([A-Z_]+)(\{[^}]+\})?(==|!=|\+=|-=|:=|=)"([^"]*)"$`)

// udevRules returns the rules of a rules file, each a list of tokens, and
// fails t on any token that is not KEY{attr}OP"value" or on a missing comma.
func udevRules(t testing.TB, p string) [][]string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var rules [][]string
	joined := strings.ReplaceAll(string(b), "\\\n", "")
	for n, line := range strings.Split(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var toks []string
		for _, tok := range strings.Split(line, ",") {
			tok = strings.TrimSpace(tok)
			if !udevToken.MatchString(tok) {
				t.Errorf("%s: rule %d: malformed token %q (tokens are KEY==\"value\" separated by commas)", p, n+1, tok)
			}
			toks = append(toks, tok)
		}
		rules = append(rules, toks)
	}
	return rules
}

func TestUdevRule(t *testing.T) {
	p := repoPath("packaging/udev/60-kvmmanager-agent.rules")
	rules := udevRules(t, p)
	if len(rules) != 2 {
		t.Fatalf("%s has %d rules, want 2 (one per port)", p, len(rules))
	}
	for i, name := range []string{"org.kvmmanager.agent.0", "org.qemu.guest_agent.0"} {
		have := map[string]bool{}
		for _, tok := range rules[i] {
			have[tok] = true
		}
		for _, tok := range []string{
			`SUBSYSTEM=="virtio-ports"`,
			`ATTR{name}=="` + name + `"`,
			`TAG+="systemd"`,
			// Appended: qemu-guest-agent's rule on the same port keeps its unit.
			`ENV{SYSTEMD_WANTS}+="` + unitName + `"`,
		} {
			if !have[tok] {
				t.Errorf("%s: rule %d lacks %s; has %v", p, i+1, tok, rules[i])
			}
		}
	}
}

// TestUdevRuleBadInput proves udevRules catches what it claims to.
func TestUdevRuleBadInput(t *testing.T) {
	p := t.TempDir() + "/bad.rules"
	if err := os.WriteFile(p, []byte(`SUBSYSTEM=="virtio-ports" TAG+="systemd"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ft := &recordingTB{TB: t}
	udevRules(ft, p)
	if !ft.failed {
		t.Fatal("a rule without a comma between tokens was accepted")
	}
}

// recordingTB records Errorf calls instead of failing the test.
type recordingTB struct {
	testing.TB
	failed bool
}

func (r *recordingTB) Errorf(string, ...any) { r.failed = true }
