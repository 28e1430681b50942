//go:build linux

package main

import (
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/berth-dev/berth/runtime"
)

func newExecCommand(g *globalOptions) *cobra.Command {
	var o runtime.ExecOptions
	var interactive bool
	cmd := &cobra.Command{
		Use:   "exec [-i] [-t] [-e K=V] [-u USER] [-w DIR] TASK COMMAND [ARG...]",
		Short: "Run a command in a running task; its exit code is berth's",
		Long: `Run a command in a running task; its exit code is berth's.

With -t the command runs on a new terminal in the container (its stdin,
stdout and stderr; the output is one stream, on stdout) that follows the
size of berth's terminal. With -i -t from a terminal, berth's terminal is
raw: every key goes to the command, ^C and ^D included. With -i -t from a
pipe or file, the input is typed into the terminal and its end becomes
^D, which ends the input of a command that reads lines; the terminal
echoes the input.`,
		Args: minArgs(2, "exec needs a task and a command"),
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := g.runtime()
			if err != nil {
				return err
			}
			o.Args = args[1:]
			o.Stdout, o.Stderr = g.stdout, g.stderr
			if interactive {
				o.Stdin = cmd.InOrStdin()
			}
			if o.TTY {
				// Raw only with -i, as docker: without it nothing reads
				// the keys, and ^C must still stop berth.
				lt, err := openLocalTerminal(cmd.InOrStdin(), g.stdout, interactive)
				if err != nil {
					return err
				}
				defer lt.restore()
				if w, h, ok := lt.size(); ok {
					o.Size = runtime.WindowSize{Width: w, Height: h}
				}
				resize := make(chan runtime.WindowSize, 1)
				lt.notifyResize(func(w, h uint16) { sendLatest(resize, runtime.WindowSize{Width: w, Height: h}) })
				o.Resize = resize
			}
			code, err := rt.Exec(args[0], o)
			if err != nil {
				if code == 0 {
					code = exitBerth
				}
				return &exitError{code: code, err: err}
			}
			if code != 0 {
				return &exitError{code: code}
			}
			return nil
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().BoolVarP(&interactive, "interactive", "i", false, "pass stdin to the command")
	cmd.Flags().BoolVarP(&o.TTY, "tty", "t", false, "run the command on a terminal")
	cmd.Flags().StringArrayVarP(&o.Env, "env", "e", nil, "set an environment variable")
	cmd.Flags().StringVarP(&o.User, "user", "u", "", "run as USER[:GROUP]")
	cmd.Flags().StringVarP(&o.WorkDir, "workdir", "w", "", "working directory")
	return cmd
}

// sendLatest puts v on a channel of capacity 1 without blocking, replacing
// a value the reader has not taken yet: only the newest size matters.
func sendLatest[T any](c chan T, v T) {
	for {
		select {
		case c <- v:
			return
		default:
		}
		select {
		case <-c:
		default:
		}
	}
}

// localTerminal is berth's own terminal during a -t session.
type localTerminal struct {
	sizeFD int // the terminal the window size is read from; -1: none
	rawFD  int
	state  *term.State // what restore puts back; nil: not made raw
	winch  chan os.Signal
}

// openLocalTerminal finds berth's terminal for a -t session. The window
// size is read from stdout's terminal, else stdin's (docker reads
// stdout's). With raw, a terminal on stdin goes into raw mode, so that
// every key reaches the container's terminal instead of acting here.
// Call restore on every path out.
func openLocalTerminal(stdin io.Reader, stdout io.Writer, raw bool) (*localTerminal, error) {
	lt := &localTerminal{sizeFD: -1}
	inFD, outFD := terminalFD(stdin), terminalFD(stdout)
	switch {
	case outFD >= 0:
		lt.sizeFD = outFD
	case inFD >= 0:
		lt.sizeFD = inFD
	}
	if raw && inFD >= 0 {
		state, err := term.MakeRaw(inFD)
		if err != nil {
			return nil, err
		}
		lt.rawFD, lt.state = inFD, state
	}
	return lt, nil
}

// terminalFD is the descriptor of f when it is a terminal, else -1.
func terminalFD(f any) int {
	if f, ok := f.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return int(f.Fd())
	}
	return -1
}

// size returns the terminal's window size; ok is false without one.
func (lt *localTerminal) size() (width, height uint16, ok bool) {
	if lt.sizeFD < 0 {
		return 0, 0, false
	}
	w, h, err := term.GetSize(lt.sizeFD)
	if err != nil {
		return 0, 0, false
	}
	return uint16(w), uint16(h), true
}

// notifyResize calls fn with the window size on every SIGWINCH until
// restore; it does nothing without a terminal.
func (lt *localTerminal) notifyResize(fn func(width, height uint16)) {
	if lt.sizeFD < 0 || lt.winch != nil {
		return
	}
	lt.winch = make(chan os.Signal, 1)
	signal.Notify(lt.winch, syscall.SIGWINCH)
	go func() {
		for range lt.winch {
			if w, h, ok := lt.size(); ok {
				fn(w, h)
			}
		}
	}()
}

// restore stops the resize notifications and leaves raw mode.
func (lt *localTerminal) restore() {
	if lt.winch != nil {
		signal.Stop(lt.winch)
		close(lt.winch)
		lt.winch = nil
	}
	if lt.state != nil {
		term.Restore(lt.rawFD, lt.state)
		lt.state = nil
	}
}
