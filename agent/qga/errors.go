//go:build !windows

package qga

import (
	"errors"
	"fmt"

	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// Error classes of QMP's ErrorClass that qemu-ga sends.
const (
	ClassGenericError    = "GenericError"
	ClassCommandNotFound = "CommandNotFound"
	ClassDeviceNotActive = "DeviceNotActive"
	ClassDeviceNotFound  = "DeviceNotFound"
)

// Error is a command's error reply: {"error": {"class": Class, "desc": Desc}}.
type Error struct {
	Class string
	Desc  string
}

func (e *Error) Error() string { return e.Class + ": " + e.Desc }

// Errorf returns a GenericError with a formatted description.
func Errorf(format string, args ...any) *Error {
	return &Error{Class: ClassGenericError, Desc: fmt.Sprintf(format, args...)}
}

// asError turns a handler's error into the reply's error: an *Error (also
// wrapped) is kept, a back end's *protocol.Error keeps its message, any
// other error is a GenericError with its text.
func asError(err error) *Error {
	var qe *Error
	if errors.As(err, &qe) {
		return qe
	}
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return &Error{Class: ClassGenericError, Desc: pe.Message}
	}
	return &Error{Class: ClassGenericError, Desc: err.Error()}
}

// Errors of the wire layer, worded as qemu-ga words them.

func errNotFound(name string) *Error {
	return &Error{Class: ClassCommandNotFound, Desc: fmt.Sprintf("The command %s has not been found", name)}
}

func errDisabled(name string) *Error {
	return &Error{Class: ClassCommandNotFound, Desc: fmt.Sprintf("Command %s has been disabled", name)}
}

func errParse(what string) *Error { return Errorf("JSON parse error, %s", what) }

var errNotObject = Errorf("QMP input must be a JSON object")

// Argument errors (qapi/qobject-input-visitor.c).

func errMissing(name string) *Error { return Errorf("Parameter '%s' is missing", name) }

func errUnexpected(name string) *Error { return Errorf("Parameter '%s' is unexpected", name) }

func errType(name, want string) *Error {
	return Errorf("Invalid parameter type for '%s', expected: %s", name, want)
}

func errEnumValue(name, value string) *Error {
	return Errorf("Parameter '%s' does not accept value '%s'", name, value)
}
