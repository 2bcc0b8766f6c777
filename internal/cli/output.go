package cli

import (
	"encoding/json"
	"io"
	"log/slog"
	"runtime/debug"
)

// PrintJSON writes v to w as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// NewLogger logs to w at level in format "text" (or "") or "json"; a bad
// level or format is a usage error naming --log-level or --log-format.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, Fail(2, "bad --log-level %q (debug, info, warn, error)", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, Fail(2, "bad --log-format %q (text, json)", format)
}

// BuildInfo is the version report: the build's module version (or linked,
// if set at link time), VCS revision and time (and whether the tree was
// modified), and the Go version. linkedCommit is the commit 'make build'
// linked in: the report's commit when the build recorded none (a build
// with -buildvcs=false, or from a tree without .git). Without build
// information it fails with exit 1.
func BuildInfo(linked, linkedCommit string) (map[string]string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil, Fail(1, "version: no build information in this binary")
	}
	v := map[string]string{"version": bi.Main.Version, "go": bi.GoVersion}
	if linked != "" {
		v["version"] = linked
	}
	if linkedCommit != "" {
		v["commit"] = linkedCommit
	}
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			v["commit"] = st.Value
		case "vcs.time":
			v["commit_time"] = st.Value
		case "vcs.modified":
			v["modified"] = st.Value
		}
	}
	return v, nil
}
