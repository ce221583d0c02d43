package filelock

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrLocked: another process holds the lock. The error that wraps it names
// that process.
var ErrLocked = errors.New("in use by another process")

// Lock is a held lock. Release it with Release.
type Lock struct {
	f    *os.File
	path string
}

// Acquire locks the file at path (created if missing) for this process, or
// fails at once: with an error wrapping ErrLocked that names the holder when
// another process holds it. what names what the lock protects, for that
// error ("data directory ./data").
func Acquire(path, what string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking %s: %w", what, err)
	}
	if err := lock(f); err != nil {
		holder := describe(f)
		_ = f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%s is %w: %s (lock file %s)", what, ErrLocked, holder, path)
		}
		return nil, fmt.Errorf("locking %s (lock file %s): %w", what, path, err)
	}
	// The holder's description: a later Acquire reads it.
	cmd := strings.Join(os.Args, " ")
	if len(cmd) > 512 {
		cmd = cmd[:512] + "…"
	}
	info := fmt.Sprintf("pid %d\ncommand %s\nsince %s\n", os.Getpid(), cmd, time.Now().UTC().Format(time.RFC3339))
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(info), 0)
	}
	return &Lock{f: f, path: path}, nil
}

// Release unlocks. Safe on nil and twice. The lock file stays: removing it
// would race with another process locking it.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

// describe reads the holder's description from the lock file: "pid 123
// (command line), since TIME", or what is known of it.
func describe(f *os.File) string {
	buf := make([]byte, 1024)
	n, _ := f.ReadAt(buf, 0)
	var pid, cmd, since string
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		key, value, _ := strings.Cut(line, " ")
		switch key {
		case "pid":
			pid = value
		case "command":
			cmd = value
		case "since":
			since = value
		}
	}
	if pid == "" {
		return "a process that has not said which (no pid in the lock file yet)"
	}
	s := "pid " + pid
	if cmd != "" {
		s += " (" + cmd + ")"
	}
	if since != "" {
		s += ", since " + since
	}
	return s
}
