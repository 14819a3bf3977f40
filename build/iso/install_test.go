package iso

import (
	"os"
	"strings"
	"testing"

	"github.com/kvmmanager/guest-agent/build/testenv"
)

// codeBlocks returns the fenced code blocks of a Markdown text whose
// language is lang, without the indentation of their fence (a block in a
// list item is indented).
func codeBlocks(md, lang string) []string {
	var blocks []string
	var cur *strings.Builder
	indent := ""
	for line := range strings.Lines(md) {
		t := strings.TrimSpace(line)
		switch {
		case cur == nil && t == "```"+lang:
			cur = &strings.Builder{}
			indent = line[:len(line)-len(strings.TrimLeft(line, " "))]
		case cur != nil && t == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(strings.TrimPrefix(line, indent))
		}
	}
	return blocks
}

// TestReadmeMatchesInstallSteps holds README.md's install instructions to
// the ones readme.txt on the disc is made from: the same mount command, the
// same installers with the same shell and the same systems, the same
// uninstall command and the same libvirt channel.
func TestReadmeMatchesInstallSteps(t *testing.T) {
	b, err := os.ReadFile(testenv.RepoPath(t, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	var install string
	for _, blk := range codeBlocks(md, "sh") {
		if strings.Contains(blk, "/media/cdrom/install-debian.sh") {
			install = blk
			break
		}
	}
	if install == "" {
		t.Fatal("README.md has no ```sh block with /media/cdrom/install-debian.sh")
	}
	var got []InstallStep
	var mount string
	for line := range strings.Lines(install) {
		cmd, comment, _ := strings.Cut(line, "#")
		cmd, comment = strings.TrimSpace(cmd), strings.TrimSpace(comment)
		switch {
		case cmd == "":
		case strings.Contains(cmd, "mount "):
			mount = cmd
		default:
			got = append(got, InstallStep{cmd, comment})
		}
	}
	if mount != MountStep {
		t.Errorf("README mounts the disc with %q, readme.txt with %q", mount, MountStep)
	}
	if len(got) != len(InstallSteps) {
		t.Fatalf("README's install block has %d installers %q, readme.txt %d %q", len(got), got, len(InstallSteps), InstallSteps)
	}
	for i := range got {
		if got[i] != InstallSteps[i] {
			t.Errorf("README's installer %d is %q  # %q, readme.txt's %q  # %q", i+1, got[i].Command, got[i].For, InstallSteps[i].Command, InstallSteps[i].For)
		}
	}
	if !strings.Contains(md, "`"+UninstallStep) {
		t.Errorf("README does not remove the agent with `%s`", UninstallStep)
	}
	found := false
	for _, blk := range codeBlocks(md, "xml") {
		if strings.Contains(blk, "org.kvmmanager.agent.0") {
			found = true
			if blk != ChannelXML {
				t.Errorf("README's channel XML is\n%s\nreadme.txt's\n%s", blk, ChannelXML)
			}
		}
	}
	if !found {
		t.Error("README.md has no ```xml block with the channel")
	}
}

func TestReadmeTextHasInstallSteps(t *testing.T) {
	txt := readme("1.2.3", []string{"amd64"}, nil, nil)
	want := []string{"KVM Manager guest agent 1.2.3\n", "    " + MountStep + "\n", "    " + UninstallStep + " ", "openSUSE",
		"      <source mode='bind'/>\n", "    </channel>\n\nContents:\n", "linux-amd64/kvmmanager-agent"}
	for _, s := range InstallSteps {
		want = append(want, "    "+s.Command+" ")
	}
	for _, w := range want {
		if !strings.Contains(txt, w) {
			t.Errorf("readme.txt lacks %q:\n%s", w, txt)
		}
	}
}
