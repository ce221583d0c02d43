//go:build !linux

package wiretest

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
