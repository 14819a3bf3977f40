package config

import (
	"os"
	"path/filepath"
)

// DefaultPath is where the agent looks for its configuration:
// %ProgramData%\kvmmanager-agent\config.json.
var DefaultPath = filepath.Join(programData(), "kvmmanager-agent", "config.json")

// Defaults of the path and command keys. Reading covers the system's
// temporary directory and the agent's own data; writing only the temporary
// directory. The whitelist (off by default) names harmless programs of
// C:\Windows\System32.
var (
	defaultReadPaths  = []string{`C:\Windows\Temp`, filepath.Join(programData(), "kvmmanager-agent")}
	defaultWritePaths = []string{`C:\Windows\Temp`}
	defaultWhitelist  = []string{"hostname", "ipconfig", "systeminfo", "tasklist", "whoami"}
)

// pathSeparators make a command_whitelist entry a path, not a bare name.
const pathSeparators = `/\:`

// programData is %ProgramData%, C:\ProgramData when unset.
func programData() string {
	if d := os.Getenv("ProgramData"); d != "" && filepath.IsAbs(d) {
		return d
	}
	return `C:\ProgramData`
}
