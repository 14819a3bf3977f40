package config

// DefaultPath is where the agent looks for its configuration.
const DefaultPath = "/etc/kvmmanager-agent/config.json"

// Defaults of the path and command keys, as in packaging/config.json.
var (
	defaultReadPaths  = []string{"/etc", "/proc", "/sys", "/var/log", "/tmp", "/usr/lib/os-release"}
	defaultWritePaths = []string{"/tmp", "/var/tmp"}
	defaultWhitelist  = []string{"ls", "cat", "grep", "ps", "df", "free", "uptime"}
)

// pathSeparators make a command_whitelist entry a path, not a bare name.
const pathSeparators = "/"
