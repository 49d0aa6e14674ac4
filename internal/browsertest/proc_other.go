//go:build !unix

package browsertest

import "os/exec"

// killGroup leaves cmd as it is: its context kills node alone.
func killGroup(*exec.Cmd) {}

func reapGroup(*exec.Cmd) {}
