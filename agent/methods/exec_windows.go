package methods

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf16"
	"unsafe"

	"golang.org/x/sys/windows"

	"github.com/kvmmanager/guest-agent/agent/policy"
	"github.com/kvmmanager/guest-agent/agent/protocol"
)

// childEnv is the whole environment of every command: nothing of the
// agent's own and nothing from the request; what Windows programs need to
// find the system.
func childEnv() []string {
	root, err := windows.GetSystemWindowsDirectory()
	if err != nil || root == "" {
		root = `C:\Windows`
	}
	drive := filepath.VolumeName(root)
	return []string{
		"ComSpec=" + filepath.Join(root, "System32", "cmd.exe"),
		"PATH=" + policy.SystemPATH,
		"PATHEXT=.COM;.EXE",
		"SystemDrive=" + drive,
		"SystemRoot=" + root,
		"TEMP=" + filepath.Join(root, "Temp"),
		"TMP=" + filepath.Join(root, "Temp"),
		"windir=" + root,
	}
}

// workingDir checks the working_directory of a command: a clean path to an
// existing directory. It returns the cleaned path, which the command runs in.
func (s *Service) workingDir(_ context.Context, wd string) (string, error) {
	clean, err := policy.Clean(wd)
	if err != nil {
		return "", invalidParams("working_directory %q: %v", wd, err)
	}
	fi, err := os.Stat(clean)
	return clean, workingDirError(wd, fi, err)
}

// envBlock is env as CreateProcess's Unicode environment block.
func envBlock(env []string) *uint16 {
	var b []uint16
	for _, kv := range env {
		b = append(b, utf16.Encode([]rune(kv))...)
		b = append(b, 0)
	}
	b = append(b, 0)
	return &b[0]
}

// newKillJob is a job object that kills its processes when its last handle
// closes.
func newKillJob() (windows.Handle, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return 0, fmt.Errorf("CreateJobObject: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{}
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return 0, fmt.Errorf("SetInformationJobObject: %w", err)
	}
	return job, nil
}

// outputPipe is a pipe whose write end the child inherits.
func outputPipe() (r *os.File, w windows.Handle, err error) {
	var rh windows.Handle
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), InheritHandle: 1}
	if err := windows.CreatePipe(&rh, &w, sa, 0); err != nil {
		return nil, 0, fmt.Errorf("CreatePipe: %w", err)
	}
	// Only the write end is inherited.
	if err := windows.SetHandleInformation(rh, windows.HANDLE_FLAG_INHERIT, 0); err != nil {
		windows.CloseHandle(rh)
		windows.CloseHandle(w)
		return nil, 0, err
	}
	return os.NewFile(uintptr(rh), "pipe"), w, nil
}

// run starts the resolved command path with CreateProcess (the command line
// is quoted so that the program's C runtime splits it back into exactly the
// given arguments), suspended, puts it in a job object with
// KILL_ON_JOB_CLOSE and only then lets it run: at the timeout, and once the
// command has exited, the whole process tree it started is killed.
func (s *Service) run(ctx context.Context, path string, p protocol.ExecParams, timeout time.Duration, capture bool) (any, error) {
	job, err := newKillJob()
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
	}
	jobOpen := true
	closeJob := func() {
		if jobOpen {
			windows.TerminateJobObject(job, 1)
			windows.CloseHandle(job) // KILL_ON_JOB_CLOSE
			jobOpen = false
		}
	}
	defer closeJob()

	nul16, _ := windows.UTF16PtrFromString("NUL")
	sa := &windows.SecurityAttributes{Length: uint32(unsafe.Sizeof(windows.SecurityAttributes{})), InheritHandle: 1}
	stdin, err := windows.CreateFile(nul16, windows.GENERIC_READ, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, sa, windows.OPEN_EXISTING, 0, 0)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "open NUL: %v", err)
	}
	defer windows.CloseHandle(stdin)
	var outR, errR *os.File
	var outW, errW windows.Handle
	if capture {
		if outR, outW, err = outputPipe(); err != nil {
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
		}
		defer outR.Close()
		if errR, errW, err = outputPipe(); err != nil {
			windows.CloseHandle(outW)
			return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
		}
		defer errR.Close()
	} else {
		outW, errW = stdin, stdin // placeholders: NUL opened for reading is harmless as output
		if h, err := windows.CreateFile(nul16, windows.GENERIC_WRITE, windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE, sa, windows.OPEN_EXISTING, 0, 0); err == nil {
			outW, errW = h, h
			defer windows.CloseHandle(h)
		}
	}
	closeWriteEnds := func() {
		if capture {
			windows.CloseHandle(outW)
			windows.CloseHandle(errW)
		}
	}

	// Only these handles are inherited, whatever else the agent has open.
	handles := []windows.Handle{stdin, outW}
	if errW != outW {
		handles = append(handles, errW)
	}
	attrs, err := windows.NewProcThreadAttributeList(1)
	if err != nil {
		closeWriteEnds()
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
	}
	defer attrs.Delete()
	if err := attrs.Update(windows.PROC_THREAD_ATTRIBUTE_HANDLE_LIST, unsafe.Pointer(&handles[0]), uintptr(len(handles))*unsafe.Sizeof(handles[0])); err != nil {
		closeWriteEnds()
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: %v", p.Command, err)
	}
	si := &windows.StartupInfoEx{ProcThreadAttributeList: attrs.List()}
	si.Cb = uint32(unsafe.Sizeof(*si))
	si.Flags = windows.STARTF_USESTDHANDLES
	si.StdInput, si.StdOutput, si.StdErr = stdin, outW, errW

	// argv[0] is what the caller named, as a shell would pass it.
	cmdLine := windows.ComposeCommandLine(append([]string{p.Command}, p.Args...))
	app16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		closeWriteEnds()
		return nil, invalidParams("command %q: %v", p.Command, err)
	}
	line16, err := windows.UTF16PtrFromString(cmdLine)
	if err != nil {
		closeWriteEnds()
		return nil, invalidParams("arguments: %v", err)
	}
	var dir16 *uint16
	if p.WorkingDirectory != "" {
		dir16, _ = windows.UTF16PtrFromString(p.WorkingDirectory)
	}
	var pi windows.ProcessInformation
	flags := uint32(windows.CREATE_SUSPENDED | windows.CREATE_NO_WINDOW | windows.CREATE_UNICODE_ENVIRONMENT |
		windows.EXTENDED_STARTUPINFO_PRESENT | windows.CREATE_NEW_PROCESS_GROUP)
	start := time.Now()
	err = windows.CreateProcess(app16, line16, nil, nil, true, flags, envBlock(childEnv()), dir16, &si.StartupInfo, &pi)
	closeWriteEnds() // the child has its copies
	if err != nil {
		return nil, startError(p.Command, path, err)
	}
	defer windows.CloseHandle(pi.Process)
	// In the job before it runs a single instruction: every process it
	// starts is in the job too.
	if err := windows.AssignProcessToJobObject(job, pi.Process); err != nil {
		windows.TerminateProcess(pi.Process, 1)
		windows.CloseHandle(pi.Thread)
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "start %q: AssignProcessToJobObject: %v", p.Command, err)
	}
	windows.ResumeThread(pi.Thread)
	windows.CloseHandle(pi.Thread)
	s.log.Debug("exec_command started", "command", path, "args", len(p.Args), "pid", pi.ProcessId, "timeout", timeout)

	var stdout, stderr *cappedBuffer
	var readers sync.WaitGroup
	if capture {
		stdout = newCappedBuffer(s.cfg.MaxOutputBytes)
		stderr = newCappedBuffer(s.cfg.MaxOutputBytes)
		for _, c := range []struct {
			r *os.File
			b *cappedBuffer
		}{{outR, stdout}, {errR, stderr}} {
			readers.Add(1)
			go func() {
				defer readers.Done()
				io.Copy(c.b, c.r)
			}()
		}
	}

	// Wait for the process, the timeout or the request's end.
	exited := make(chan struct{})
	go func() {
		windows.WaitForSingleObject(pi.Process, windows.INFINITE)
		close(exited)
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	timedOut, cancelled := false, false
	select {
	case <-exited:
	case <-timer.C:
		timedOut = true
	case <-ctx.Done():
		cancelled = true
	}
	// Kill what is left of the tree (all of it after a timeout).
	closeJob()
	<-exited
	var code uint32
	windows.GetExitCodeProcess(pi.Process, &code)
	res := protocol.ExecResult{ExitCode: int(int32(code)), ExecutionTimeMS: time.Since(start).Milliseconds()}
	if capture {
		drained := make(chan struct{})
		go func() { readers.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-time.After(pipeDrainDelay):
			outR.Close()
			errR.Close()
			<-drained
			s.log.Debug("exec_command: output pipes still open after the job ended; closed them", "command", path)
		}
		res.Stdout, res.StdoutTruncated = stdout.result()
		res.Stderr, res.StderrTruncated = stderr.result()
	}
	switch {
	case timedOut:
		return nil, protocol.Errorf(protocol.CodeTimeout,
			"command %q timed out after %v; its process tree (job object) was killed", p.Command, timeout).WithData(res)
	case cancelled:
		return nil, protocol.Errorf(protocol.CodeCommandFailed, "command %q cancelled: %v; its process tree was killed", p.Command, ctx.Err())
	}
	return res, nil
}

func startError(command, path string, err error) error {
	switch {
	case errors.Is(err, windows.ERROR_FILE_NOT_FOUND), errors.Is(err, windows.ERROR_PATH_NOT_FOUND):
		return protocol.Errorf(protocol.CodeNotFound, "start %q (%s): %v", command, path, err)
	case errors.Is(err, windows.ERROR_ACCESS_DENIED):
		return protocol.Errorf(protocol.CodePermissionDenied, "start %q (%s): %v", command, path, err)
	case errors.Is(err, windows.ERROR_BAD_EXE_FORMAT):
		return protocol.Errorf(protocol.CodeCommandFailed, "start %q (%s): not a valid executable: %v", command, path, err)
	}
	return protocol.Errorf(protocol.CodeCommandFailed, "start %q (%s): %v", command, path, err)
}
