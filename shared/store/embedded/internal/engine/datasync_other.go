//go:build !linux

package engine

import "os"

func datasync(f *os.File) error { return f.Sync() }
