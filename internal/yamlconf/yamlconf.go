// Package yamlconf decodes a YAML (or JSON: YAML is a superset) config
// file into a Go struct with the checks an operator needs: every unknown
// key (with a suggestion), duplicate key and value of the wrong type is
// reported at once, each with its line; "section.key=value" overrides and
// environment variables apply on top. The struct's json tags name the keys;
// the YAML is checked against them, then converted to JSON and decoded, so
// the struct's own JSON decoding (durations, ...) is the one that counts.
// It knows nothing of the config it reads.
package yamlconf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	suggestpkg "github.com/lsnode/lsnode/internal/suggest"
)

// Error is one problem in a config file, at a line when the file has the
// key (0 when the problem is a missing one or an override's).
type Error struct {
	Path string // the key, dotted: overlay.gossip_interval
	Line int
	Msg  string
}

func (e Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Path, e.Msg)
	}
	if e.Path != "" {
		return fmt.Sprintf("%s: %s", e.Path, e.Msg)
	}
	return e.Msg
}

// Errors are every problem found in a config file, one per line.
type Errors []Error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// Decode decodes the YAML document b into v (a pointer to a struct), with
// overrides ("section.key=value", the value in YAML: "1s", "true",
// "[a, b]") applied on top. Problems are Errors.
func Decode(b []byte, overrides []string, v any) error {
	_, err := DecodeLines(b, overrides, v)
	return err
}

// Lines maps a key's dotted path (overlay.listen, overlay.listen[1],
// proxy.static_peers.b.example) to its line in the file; a key an override
// set has none.
type Lines map[string]int

// At is the line of path, or of the nearest enclosing key the file has
// (0: none).
func (l Lines) At(path string) int {
	for path != "" {
		if n, ok := l[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

// DecodeLines is Decode that also returns where each key is, so checks of
// the decoded values can report lines too.
func DecodeLines(b []byte, overrides []string, v any) (Lines, error) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return nil, Errors{{Msg: fmt.Sprintf("yamlconf: decode into %T, want a non-nil pointer", v)}}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, Errors{{Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind == 0 { // empty file
		root = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, Errors{{Line: root.Line, Msg: "the config must be a mapping of keys to values"}}
	}
	var errs Errors
	for _, o := range overrides {
		key, val, ok := strings.Cut(o, "=")
		if !ok || key == "" {
			errs = append(errs, Error{Path: o, Msg: "an override is key=value (overlay.gossip_interval=1s)"})
			continue
		}
		if err := setYAML(root, strings.Split(key, "."), val); err != nil {
			errs = append(errs, Error{Path: key, Msg: err.Error()})
		}
	}
	checkYAML(root, rv.Type().Elem(), "", &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	js, err := yamlToJSON(root)
	if err != nil {
		return nil, Errors{{Msg: err.Error()}}
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, Errors{{Msg: err.Error()}}
	}
	lines := Lines{}
	locate(root, "", lines)
	return lines, nil
}

// locate records the line of every key under n (of every element of a
// list), skipping the nodes an override made (line 0).
func locate(n *yaml.Node, path string, lines Lines) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := join(path, k.Value)
			if k.Line > 0 && n.Content[i+1].Line > 0 {
				lines[p] = k.Line
			}
			locate(n.Content[i+1], p, lines)
		}
	case yaml.SequenceNode:
		for i, e := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if e.Line > 0 {
				lines[p] = e.Line
			}
			locate(e, p, lines)
		}
	}
}

// Described is a value type that names itself in errors ("a duration like
// \"30s\"") instead of by its kind.
type Described interface{ ConfigType() string }

// EnvOverrides turns environment variables named prefix + KEY into
// overrides for the struct v points to (or is): PREFIX_SIP=... sets sip,
// PREFIX_OVERLAY__GOSSIP_INTERVAL=1s sets overlay.gossip_interval (a double
// underscore separates sections, as key names have single ones). Variables
// whose first part is no top-level key of v are not overrides.
func EnvOverrides(prefix string, v any, environ []string) []string {
	t := reflect.TypeOf(v)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	top := jsonFields(t)
	var out []string
	for _, kv := range environ {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, prefix) {
			continue
		}
		key := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, prefix)), "__", ".")
		first, _, _ := strings.Cut(key, ".")
		if _, ok := top[first]; !ok {
			continue // not a config key (a test suite's switch, ...)
		}
		out = append(out, key+"="+val)
	}
	slices.Sort(out)
	return out
}

// checkYAML walks n against type t: unknown keys, duplicate keys and values
// that do not decode into their field are collected with their lines.
func checkYAML(n *yaml.Node, t reflect.Type, path string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode:
		fields := jsonFields(t)
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := join(path, k.Value)
			f, ok := fields[k.Value]
			switch {
			case !ok:
				*errs = append(*errs, Error{Path: p, Line: k.Line, Msg: "unknown key" + suggest(k.Value, fields)})
				continue
			case seen[k.Value]:
				*errs = append(*errs, Error{Path: p, Line: k.Line, Msg: "key given twice"})
				continue
			}
			seen[k.Value] = true
			checkYAML(v, f.Type, p, errs)
		}
	case t.Kind() == reflect.Struct:
		*errs = append(*errs, Error{Path: path, Line: n.Line, Msg: "want a mapping of keys to values"})
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkYAML(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), errs)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8 && n.Kind == yaml.SequenceNode:
		for i, e := range n.Content {
			checkYAML(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i), errs)
		}
	default:
		// A leaf (or a container of the wrong shape): decode it alone.
		js, err := yamlToJSON(n)
		if err == nil {
			err = json.Unmarshal(js, reflect.New(t).Interface())
		}
		if err != nil {
			*errs = append(*errs, Error{Path: path, Line: n.Line, Msg: leafError(err, t, n)})
		}
	}
}

func leafError(err error, t reflect.Type, n *yaml.Node) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("want %s, got %q", typeName(t), n.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func typeName(t reflect.Type) string {
	if d, ok := reflect.New(t).Elem().Interface().(Described); ok {
		return d.ConfigType()
	}
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Uint32:
		return "a whole number"
	case reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map:
		return "a mapping"
	}
	return t.String()
}

// jsonFields maps a struct's json keys to its fields.
func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}

// suggest names a known key k probably means.
func suggest(k string, fields map[string]reflect.StructField) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	if name := suggestpkg.Closest(k, names); name != "" {
		return fmt.Sprintf(" (did you mean %q?)", name)
	}
	return ""
}

func join(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

// yamlToJSON converts a YAML node to JSON (mapping keys as strings).
func yamlToJSON(n *yaml.Node) ([]byte, error) {
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(stringKeys(v))
}

func stringKeys(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = stringKeys(e)
		}
		return x
	case map[any]any:
		m := map[string]any{}
		for k, e := range x {
			m[fmt.Sprint(k)] = stringKeys(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = stringKeys(e)
		}
	}
	return v
}

func noLines(n *yaml.Node) {
	n.Line, n.Column = 0, 0
	for _, c := range n.Content {
		noLines(c)
	}
}

// setYAML sets path in the mapping root to val (parsed as YAML: "1s",
// "true", "[a, b]"), creating mappings on the way.
func setYAML(root *yaml.Node, path []string, val string) error {
	var v yaml.Node
	if err := yaml.Unmarshal([]byte(val), &v); err != nil {
		return fmt.Errorf("value %q: %v", val, err)
	}
	leaf := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: ""}
	if len(v.Content) == 1 {
		leaf = v.Content[0]
	}
	noLines(leaf) // it is not in the file
	n := root
	for i, k := range path {
		var next *yaml.Node
		for j := 0; j+1 < len(n.Content); j += 2 {
			if n.Content[j].Value == k {
				next = n.Content[j+1]
			}
		}
		if i == len(path)-1 {
			if next != nil {
				*next = *leaf
			} else {
				n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, leaf)
			}
			return nil
		}
		if next == nil {
			next = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, next)
		}
		if next.Kind != yaml.MappingNode {
			return fmt.Errorf("%s is not a section", strings.Join(path[:i+1], "."))
		}
		n = next
	}
	return nil
}
