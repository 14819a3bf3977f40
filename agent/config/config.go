// Package config loads and validates the agent's configuration file,
// DefaultPath unless given: /etc/kvmmanager-agent/config.json on Linux,
// %ProgramData%\kvmmanager-agent\config.json on Windows. What differs per
// OS (that path and the default paths and commands) lives in defaults_*.go;
// the schema, the strict parsing and the validation are shared.
//
// The schema is the seed's (protocol 1.0 era) plus a few optional keys with
// safe defaults. Decoding is strict: an unknown key, a wrong type or a bad
// value is an error that names the file, the line:column and the key, because
// a typo in a security setting must never be silently ignored.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
	"github.com/kvmmanager/guest-agent/agent/qga/qapi"
)

// Limits on configurable values.
const (
	MaxFileSizeLimit    = 256 << 20 // upper bound for max_file_size_bytes
	MaxTimeoutSeconds   = 86400     // upper bound for command_timeout_seconds
	MaxConcurrencyLimit = 1024      // upper bound for max_concurrent_requests
	MaxOutputLimit      = 64 << 20  // upper bound for max_output_bytes
	MaxFsfreezeTimeout  = 3600      // upper bound for fsfreeze_timeout_seconds
	MaxMemoryLimit      = 64 << 30  // upper bound for max_memory_bytes
	DefaultMaxMemory    = 64 << 20  // default max_memory_bytes
	MaxBackgroundLimit  = 604800    // upper bound for max_background_seconds (7 days)
)

// MinMemoryBytes is the smallest max_memory_bytes allowed with files of
// maxFileSize bytes: request input may take half of the budget, and that
// half must hold one request line of the largest file_write (the server's
// line limit: base64 of the file, a sixth more for escapes, 64 KiB of
// envelope); plus 1 MiB for the small requests beside it. A budget below it
// would refuse the largest legal request even on an idle agent.
func MinMemoryBytes(maxFileSize int64) int64 {
	return 2*(4*((maxFileSize+2)/3)+maxFileSize/6+64<<10) + 1<<20
}

// Config is the agent configuration. JSON names are the file's keys.
type Config struct {
	// AllowedReadPaths are the directories (or single files) file_read may
	// read, matched by whole path components.
	AllowedReadPaths []string `json:"allowed_read_paths"`
	// AllowedWritePaths are the directories (or single files) file_write may write.
	AllowedWritePaths []string `json:"allowed_write_paths"`
	// CommandWhitelistEnabled restricts exec_command to CommandWhitelist.
	CommandWhitelistEnabled bool `json:"command_whitelist_enabled"`
	// CommandWhitelist holds bare command names (resolved through the fixed
	// system PATH) or absolute paths allowed verbatim.
	CommandWhitelist []string `json:"command_whitelist"`
	// MaxFileSizeBytes caps file_read and file_write content (decoded size).
	MaxFileSizeBytes int64 `json:"max_file_size_bytes"`
	// CommandTimeoutSeconds caps every exec_command's timeout.
	CommandTimeoutSeconds int `json:"command_timeout_seconds"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `json:"log_level"`

	// Keys added after the seed schema; all optional.

	// MaxConcurrentRequests bounds requests handled at once per connection (default 10).
	MaxConcurrentRequests int `json:"max_concurrent_requests"`
	// MaxOutputBytes caps each of exec_command's stdout and stderr (default 1 MiB).
	MaxOutputBytes int `json:"max_output_bytes"`
	// DisabledMethods are method names the agent refuses with -32601, and
	// QGA command names (guest-exec, ...) refused as qemu-ga refuses a
	// disabled command. A protocol 1.0 name also disables the QGA commands
	// that reach the same operation (see agent/PROTOCOL-qga.md).
	DisabledMethods []string `json:"disabled_methods"`
	// FsfreezeTimeoutSeconds bounds a freeze: the agent thaws by itself
	// when no thaw came within it (default 60).
	FsfreezeTimeoutSeconds int `json:"fsfreeze_timeout_seconds"`
	// AllowAccountChanges enables set_user_password and adding or removing
	// SSH authorized keys (default false: they change credentials).
	AllowAccountChanges bool `json:"allow_account_changes"`
	// MaxBackgroundSeconds caps the timeout of a background command
	// (exec_start; default 3600).
	MaxBackgroundSeconds int `json:"max_background_seconds"`
	// QGAPort is "auto" (serve org.qemu.guest_agent.0 when it exists and
	// nobody else, e.g. qemu-ga, holds it) or "off".
	QGAPort string `json:"qga_port"`
	// MaxMemoryBytes bounds the memory that requests and replies in flight
	// hold together, on both ports (default 64 MiB, or MinMemoryBytes of
	// max_file_size_bytes when that is larger and the key is absent).
	MaxMemoryBytes int64 `json:"max_memory_bytes"`
}

// Values of QGAPort.
const (
	QGAPortAuto = "auto"
	QGAPortOff  = "off"
)

// Default returns the built-in configuration, identical to the shipped
// packaging/config.json plus the defaults of the optional keys.
func Default() *Config {
	return &Config{
		AllowedReadPaths:        slices.Clone(defaultReadPaths),
		AllowedWritePaths:       slices.Clone(defaultWritePaths),
		CommandWhitelistEnabled: false,
		CommandWhitelist:        slices.Clone(defaultWhitelist),
		MaxFileSizeBytes:        protocol.DefaultMaxFileSize,
		CommandTimeoutSeconds:   30,
		LogLevel:                "info",
		MaxConcurrentRequests:   10,
		MaxOutputBytes:          1 << 20,
		DisabledMethods:         []string{},
		FsfreezeTimeoutSeconds:  60,
		AllowAccountChanges:     false,
		QGAPort:                 QGAPortAuto,
		MaxMemoryBytes:          DefaultMaxMemory,
		MaxBackgroundSeconds:    3600,
	}
}

// ErrNotExist is wrapped by Load's error when the file does not exist; the
// caller may then run with Default().
var ErrNotExist = fs.ErrNotExist

// Load reads and validates the file at path. Keys absent from the file keep
// their default values. If the file does not exist, Load returns Default()
// and an error wrapping ErrNotExist.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Default(), fmt.Errorf("config %s: %w", path, err)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if key, msg := c.checkOwnership(); key != "" {
		line, col := position(data, keyOffset(data, key))
		return nil, fmt.Errorf("config %s:%d:%d: key %q: %s", path, line, col, key, msg)
	}
	return c, nil
}

// checkOwnership refuses allowed entries and absolute command_whitelist
// entries that a user other than root could replace or plant (see
// policy.CheckChain): a user who can rename an allowed directory can swap it
// for another one, and one who can write a whitelisted program's directory
// gets it run as root. Missing entries pass when nobody else could create
// them. Built-in defaults pass on every usual system.
func (c *Config) checkOwnership() (key, msg string) {
	for _, k := range []struct {
		key   string
		paths []string
		file  bool
	}{{"allowed_read_paths", c.AllowedReadPaths, false}, {"allowed_write_paths", c.AllowedWritePaths, false}, {"command_whitelist", c.CommandWhitelist, true}} {
		for _, p := range k.paths {
			if !filepath.IsAbs(p) {
				continue // bare command names are looked up in trusted directories only
			}
			if err := policy.CheckChain(p, k.file); err != nil {
				return k.key, fmt.Sprintf("entry %q refused: %v", p, err)
			}
		}
	}
	return "", ""
}

// keyOffset is the offset of the first occurrence of key as a member name
// in data (0 if absent: the key came from the defaults).
func keyOffset(data []byte, key string) int64 {
	if i := bytes.Index(data, []byte(`"`+key+`"`)); i >= 0 {
		return int64(i)
	}
	return 0
}

// Parse decodes and validates data, naming path in errors.
func Parse(path string, data []byte) (*Config, error) {
	c := Default()
	fields := map[string]any{
		"allowed_read_paths":        &c.AllowedReadPaths,
		"allowed_write_paths":       &c.AllowedWritePaths,
		"command_whitelist_enabled": &c.CommandWhitelistEnabled,
		"command_whitelist":         &c.CommandWhitelist,
		"max_file_size_bytes":       &c.MaxFileSizeBytes,
		"command_timeout_seconds":   &c.CommandTimeoutSeconds,
		"log_level":                 &c.LogLevel,
		"max_concurrent_requests":   &c.MaxConcurrentRequests,
		"max_output_bytes":          &c.MaxOutputBytes,
		"disabled_methods":          &c.DisabledMethods,
		"fsfreeze_timeout_seconds":  &c.FsfreezeTimeoutSeconds,
		"allow_account_changes":     &c.AllowAccountChanges,
		"qga_port":                  &c.QGAPort,
		"max_memory_bytes":          &c.MaxMemoryBytes,
		"max_background_seconds":    &c.MaxBackgroundSeconds,
	}
	fail := func(off int64, key string, format string, args ...any) error {
		line, col := position(data, off)
		where := fmt.Sprintf("%s:%d:%d", path, line, col)
		if key != "" {
			return fmt.Errorf("config %s: key %q: %s", where, key, fmt.Sprintf(format, args...))
		}
		return fmt.Errorf("config %s: %s", where, fmt.Sprintf(format, args...))
	}
	syntax := func(err error, off int64) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return fail(se.Offset, "", "invalid JSON: %v", se)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return fail(int64(len(data)), "", "invalid JSON: unexpected end of file")
		}
		return fail(off, "", "invalid JSON: %v", err)
	}

	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, syntax(err, dec.InputOffset())
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fail(int64(len(data)-len(bytes.TrimLeft(data, " \t\r\n"))), "", "top level must be a JSON object")
	}
	seen := map[string]bool{}
	offsets := map[string]int64{}
	for dec.More() {
		keyStart := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return nil, syntax(err, keyStart)
		}
		key := tok.(string) // object keys are always strings
		keyOff := keyStart + int64(bytes.IndexByte(data[keyStart:], '"'))
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntax(err, dec.InputOffset())
		}
		dst, ok := fields[key]
		if !ok {
			return nil, fail(keyOff, key, "unknown key (known keys: %s)", strings.Join(sortedKeys(fields), ", "))
		}
		if seen[key] {
			return nil, fail(keyOff, key, "duplicate key")
		}
		seen[key] = true
		offsets[key] = keyOff
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return nil, fail(keyOff, key, "must not be null")
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, fail(keyOff, key, "wrong type: got JSON %s, want %s", te.Value, typeName(dst))
			}
			return nil, fail(keyOff, key, "%v", err)
		}
	}
	if _, err := dec.Token(); err != nil { // closing '}'
		return nil, syntax(err, dec.InputOffset())
	}
	if _, err := dec.Token(); err == nil {
		return nil, fail(dec.InputOffset(), "", "unexpected data after the top-level object")
	}
	if !seen["max_memory_bytes"] {
		c.MaxMemoryBytes = max(DefaultMaxMemory, MinMemoryBytes(c.MaxFileSizeBytes))
	}
	if key, msg := c.validate(); key != "" {
		return nil, fail(offsets[key], key, "%s", msg)
	}
	c.normalize()
	return c, nil
}

// validate returns the first offending key and why, or "" when c is valid.
func (c *Config) validate() (key, msg string) {
	for _, k := range []struct {
		key   string
		paths []string
	}{{"allowed_read_paths", c.AllowedReadPaths}, {"allowed_write_paths", c.AllowedWritePaths}} {
		for _, p := range k.paths {
			if !filepath.IsAbs(p) {
				return k.key, fmt.Sprintf("path %q is not absolute", p)
			}
		}
	}
	for _, name := range c.CommandWhitelist {
		if name == "" || (strings.ContainsAny(name, pathSeparators) && !filepath.IsAbs(name)) {
			return "command_whitelist", fmt.Sprintf("entry %q must be a bare command name or an absolute path", name)
		}
	}
	if c.MaxFileSizeBytes < 1 || c.MaxFileSizeBytes > MaxFileSizeLimit {
		return "max_file_size_bytes", fmt.Sprintf("must be between 1 and %d, got %d", MaxFileSizeLimit, c.MaxFileSizeBytes)
	}
	if c.CommandTimeoutSeconds < 1 || c.CommandTimeoutSeconds > MaxTimeoutSeconds {
		return "command_timeout_seconds", fmt.Sprintf("must be between 1 and %d, got %d", MaxTimeoutSeconds, c.CommandTimeoutSeconds)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return "log_level", fmt.Sprintf("must be one of debug, info, warn, error, got %q", c.LogLevel)
	}
	if c.MaxConcurrentRequests < 1 || c.MaxConcurrentRequests > MaxConcurrencyLimit {
		return "max_concurrent_requests", fmt.Sprintf("must be between 1 and %d, got %d", MaxConcurrencyLimit, c.MaxConcurrentRequests)
	}
	if c.MaxOutputBytes < 0 || c.MaxOutputBytes > MaxOutputLimit {
		return "max_output_bytes", fmt.Sprintf("must be between 0 and %d, got %d", MaxOutputLimit, c.MaxOutputBytes)
	}
	if lo := MinMemoryBytes(c.MaxFileSizeBytes); c.MaxMemoryBytes < lo || c.MaxMemoryBytes > MaxMemoryLimit {
		return "max_memory_bytes", fmt.Sprintf("must be between %d (twice a request line of max_file_size_bytes %d, plus 1 MiB) and %d, got %d",
			lo, c.MaxFileSizeBytes, int64(MaxMemoryLimit), c.MaxMemoryBytes)
	}
	if c.FsfreezeTimeoutSeconds < 1 || c.FsfreezeTimeoutSeconds > MaxFsfreezeTimeout {
		return "fsfreeze_timeout_seconds", fmt.Sprintf("must be between 1 and %d, got %d", MaxFsfreezeTimeout, c.FsfreezeTimeoutSeconds)
	}
	if c.MaxBackgroundSeconds < 1 || c.MaxBackgroundSeconds > MaxBackgroundLimit {
		return "max_background_seconds", fmt.Sprintf("must be between 1 and %d, got %d", MaxBackgroundLimit, c.MaxBackgroundSeconds)
	}
	for _, m := range c.DisabledMethods {
		if !slices.Contains(protocol.Methods, m) && !slices.Contains(protocol.Methods11, m) && !qapi.Known(m) {
			return "disabled_methods", fmt.Sprintf("unknown method %q (neither a protocol 1.0/1.1 method nor a QGA command)", m)
		}
	}
	switch c.QGAPort {
	case QGAPortAuto, QGAPortOff:
	default:
		return "qga_port", fmt.Sprintf("must be %q or %q, got %q", QGAPortAuto, QGAPortOff, c.QGAPort)
	}
	return "", ""
}

// normalize cleans paths so that policy checks compare canonical forms.
func (c *Config) normalize() {
	for i, p := range c.AllowedReadPaths {
		c.AllowedReadPaths[i] = filepath.Clean(p)
	}
	for i, p := range c.AllowedWritePaths {
		c.AllowedWritePaths[i] = filepath.Clean(p)
	}
}

// MethodDisabled reports whether the config disables method. A protocol
// 1.1 method that reaches a 1.0 operation is disabled with it, so that a
// configuration written for 1.0 keeps its meaning: exec_start, exec_status
// and exec_kill with exec_command, file_stat with file_read (file_read's and
// file_write's chunks are those methods already).
func (c *Config) MethodDisabled(method string) bool {
	if slices.Contains(c.DisabledMethods, method) {
		return true
	}
	if base, ok := impliedBy[method]; ok {
		return slices.Contains(c.DisabledMethods, base)
	}
	return false
}

// impliedBy maps a protocol 1.1 method to the 1.0 method whose operation
// it reaches.
var impliedBy = map[string]string{
	"exec_start": "exec_command", "exec_status": "exec_command", "exec_kill": "exec_command",
	"file_stat": "file_read",
}

func position(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	before := data[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	col = int(off) - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func typeName(dst any) string {
	switch dst.(type) {
	case *[]string:
		return "an array of strings"
	case *bool:
		return "a boolean"
	case *int, *int64:
		return "an integer"
	case *string:
		return "a string"
	}
	return fmt.Sprintf("%T", dst)
}
