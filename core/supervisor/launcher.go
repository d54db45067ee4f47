package supervisor

import (
	"runtime"
)

// Launcher starts plugin processes from one OS thread that never exits.
// Linux delivers a parent-death signal when the *thread* that forked the
// child ends, not the process; Go may retire threads, so every fork happens
// on a thread locked for the life of the host.
type Launcher struct {
	jobs chan func()
}

// NewLauncher starts the launcher thread.
func NewLauncher() *Launcher {
	l := &Launcher{jobs: make(chan func())}
	go func() {
		runtime.LockOSThread()
		// Never unlocked: the thread must outlive every child it forked.
		for job := range l.jobs {
			job()
		}
	}()
	return l
}

// Do runs fn on the launcher thread and waits for it.
func (l *Launcher) Do(fn func()) {
	done := make(chan struct{})
	l.jobs <- func() {
		defer close(done)
		fn()
	}
	<-done
}
