package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// defaultTimeout is the time budget of a command's query unless --timeout says otherwise.
const defaultTimeout = 10 * time.Second

// common are the flags of every command.
type common struct {
	db        string
	timeout   time.Duration
	json      bool
	maxMemory string // a size, or "" (memory.go)
}

// open opens the database, the command kept to its memory budget from then on.
func (c common) open(ctx context.Context) (*database, error) {
	limit, source, err := memoryBudget(c.maxMemory, os.Getenv)
	if err != nil {
		return nil, err
	}
	mem, err := newMemoryGuard(limit, source)
	if err != nil {
		return nil, err
	}
	return openDatabase(ctx, c.db, c.timeout, mem)
}

// flagSet is a command's flags and its -h.
type flagSet struct {
	*flag.FlagSet
	help func()
}

// newFlags makes the flag set of a command, with the flags of every command; synopsis is the
// first line of its -h.
func newFlags(name, synopsis string, out io.Writer, c *common, timeout time.Duration) flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	// flag reports an error with Usage and the error: here the error is one line, and -h
	// prints the usage (parse).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	help := func() {
		fmt.Fprintf(out, "Usage: querylog %s %s\n\nFlags:\n", name, synopsis)
		var b bytes.Buffer
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
		io.WriteString(out, gnuFlags(b.String()))
	}
	fs.StringVar(&c.db, "db", "./querylog.db", "the database `PATH`")
	fs.DurationVar(&c.timeout, "timeout", timeout, "time budget of the query (0: none)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.StringVar(&c.maxMemory, "max-memory", "", "stop once the command's resident memory passes `SIZE` (e.g. 48MiB; 0: none; default $"+memoryEnv+", unset: none)")
	return flagSet{fs, help}
}

// longFlagRe finds a flag of more than one letter as the flag package spells it, at the start
// of a line of PrintDefaults or after "flag" in its errors: -db, -slower-than.
var longFlagRe = regexp.MustCompile(`(?m)(^  |flag |for |defined: |argument: )-([a-z][a-z-]+)`)

// gnuFlags respells the flag package's -db as --db, the spelling of the usage, the README and
// the errors (GNU's: two dashes for a word, one for a letter, as in tail -f -n 10 --db PATH).
// The flag package accepts either when parsing.
func gnuFlags(s string) string { return longFlagRe.ReplaceAllString(s, "$1--$2") }

// parseNoArgs is parse for a command that takes flags only.
func parseNoArgs(fs flagSet, args []string) error {
	pos, err := parse(fs, args)
	if err == nil && len(pos) > 0 {
		err = usageError("unexpected argument %q", pos[0])
	}
	return err
}

// parse parses args, flags and positional arguments in any order (top domains --since 1h and
// top --since 1h domains alike), and returns the positional ones.
func parse(fs flagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.help()
				return nil, err
			}
			return nil, usageError("%s (querylog %s -h lists the flags)", gnuFlags(err.Error()), fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional, args = append(positional, args[0]), args[1:]
	}
}

// timeFlag is a point in time given as a duration ago (30m, 1h, 30d) or an RFC 3339 time.
type timeFlag struct {
	text string
	t    time.Time
}

func (f *timeFlag) String() string { return f.text }

func (f *timeFlag) Set(s string) error {
	t, err := parseTime(s, time.Now())
	if err != nil {
		return err
	}
	f.text, f.t = s, t
	return nil
}

func (f *timeFlag) set() bool { return f.text != "" }

// parseTime reads a duration before now (Go's units, and d for days: 30m, 1h30m, 30d, 1.5d)
// or an RFC 3339 time.
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a duration ago (30m, 1h, 30d) nor an RFC 3339 time (2026-11-29T18:00:00Z)", s)
	}
	return now.Add(-d), nil
}

// parseDuration is time.ParseDuration that also takes days (30d, 1.5d); it must not be negative.
func parseDuration(s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 || n > 100*365 {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, err
		}
	}
	if d < 0 {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	return d, nil
}

// durationFlag is a flag.Value for a duration that also takes days.
type durationFlag struct{ d time.Duration }

func (f *durationFlag) String() string {
	if f == nil || f.d == 0 {
		return ""
	}
	return f.d.String()
}

func (f *durationFlag) Set(s string) (err error) {
	f.d, err = parseDuration(s)
	return err
}
