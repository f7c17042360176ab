package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// Where a value came from, as reported in Sources.
const (
	SourceDefault = "default"
	SourceFile    = "file"
	SourceEnv     = "env"
	SourceFlag    = "flag"
)

// Sources maps every dotted key to where its effective value came from: SourceDefault,
// SourceFile, SourceEnv or SourceFlag.
type Sources map[string]string

// LoadOptions says where Load finds the configuration.
type LoadOptions struct {
	// Home is the home directory. "" means $MADANG_HOME from Env, else <XDG data home>/madang.
	Home string
	// File is an explicit configuration file (--config), which must exist. "" means
	// <Home>/config.yaml, which may be missing.
	File string
	// Env holds "KEY=value" entries like os.Environ(); nil means no environment.
	Env []string
	// Overrides maps dotted keys to values of command-line flags the user set, e.g.
	// "listen": []string{...}, "api.listen": "127.0.0.1:0". Values have the setting's Go type or
	// are strings, parsed like environment variables.
	Overrides map[string]any
}

// maxFileSize bounds the configuration file.
const maxFileSize = 1 << 20

// Load assembles the configuration from defaults, the file, the environment and overrides, in
// rising precedence, and validates it.
//
// Environment variables are named by EnvVar (MADANG_API_LISTEN, MADANG_CONNMGR_HIGH_WATER); lists
// are comma-separated; an empty variable counts as unset; variables that name no key are ignored.
// The file is checked strictly: unknown keys, duplicate keys and values of the wrong YAML type are
// errors naming the file, key and line.
//
// Errors about content wrap ErrInvalid and are *Error values (several are joined with
// errors.Join). When only validation fails, Load also returns the assembled Config and Sources,
// so that callers can show them next to the error.
func Load(opts LoadOptions) (Config, Sources, error) {
	home := opts.Home
	if home == "" {
		home = homeFrom(lookupEnv(opts.Env, HomeEnv))
	}
	file, explicit := opts.File, true
	if file == "" {
		file, explicit = PathsFor(home).Config, false
	}
	data, found, err := readFile(file, explicit)
	if err != nil {
		return Config{}, nil, err
	}

	ls := leaves()
	var p problems
	fromFile := fileValues{values: map[string]reflect.Value{}, lines: map[string]int{}}
	if found {
		fromFile, err = parseFile(file, data)
		p.addErr(err)
	}
	fromEnv, envNames, err := parseEnv(opts.Env, ls)
	p.addErr(err)
	fromFlags, err := parseOverrides(opts.Overrides, ls)
	p.addErr(err)
	if err := p.err(); err != nil {
		return Config{}, nil, err
	}

	// A fresh viper per Load. Every key gets a default, so that Unmarshal sees all of them.
	// Viper's own environment layer reads the process environment only, while Load takes the
	// environment as an argument; the parsed and type-checked variables are therefore merged
	// into the config layer after the file, and flags go to the override layer on top.
	v := viper.New()
	def := reflect.ValueOf(Default())
	for _, f := range ls {
		v.SetDefault(f.key, viperValue(def.FieldByIndex(f.index)))
	}
	if err := v.MergeConfigMap(nest(fromFile.values)); err != nil {
		return Config{}, nil, fmt.Errorf("config: merge file %s: %w", file, err)
	}
	if err := v.MergeConfigMap(nest(fromEnv)); err != nil {
		return Config{}, nil, fmt.Errorf("config: merge environment: %w", err)
	}
	for key, val := range fromFlags {
		v.Set(key, val.Interface())
	}
	var c Config
	strict := func(dc *mapstructure.DecoderConfig) {
		dc.WeaklyTypedInput = false
		dc.ErrorUnused = true
	}
	if err := v.Unmarshal(&c, strict); err != nil {
		return Config{}, nil, fmt.Errorf("config: decode: %w", err)
	}
	normalize(&c, ls)

	sources := make(Sources, len(ls))
	for _, f := range ls {
		switch {
		case hasKey(fromFlags, f.key):
			sources[f.key] = SourceFlag
		case hasKey(fromEnv, f.key):
			sources[f.key] = SourceEnv
		case hasKey(fromFile.values, f.key):
			sources[f.key] = SourceFile
		default:
			sources[f.key] = SourceDefault
		}
	}

	if err := c.Validate(); err != nil {
		for _, e := range flatten(err) {
			var ce *Error
			if !errors.As(e, &ce) || ce.Key == "" {
				continue
			}
			switch sources[ce.Key] {
			case SourceFile:
				ce.File, ce.Line = file, fromFile.lines[ce.Key]
			case SourceEnv:
				ce.Msg += " (set by environment variable " + envNames[ce.Key] + ")"
			case SourceFlag:
				ce.Msg += " (set by a command-line flag)"
			}
		}
		return c, sources, err
	}
	return c, sources, nil
}

func hasKey[V any](m map[string]V, key string) bool {
	_, ok := m[key]
	return ok
}

// lookupEnv returns the last value of name in env.
func lookupEnv(env []string, name string) string {
	var val string
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			val = v
		}
	}
	return val
}

// viperValue returns a default as handed to viper: empty lists become empty, not nil, because
// viper drops keys whose value is nil.
func viperValue(v reflect.Value) any {
	if v.Kind() == reflect.Slice && v.IsNil() {
		return reflect.MakeSlice(v.Type(), 0, 0).Interface()
	}
	return v.Interface()
}

// normalize turns empty lists into nil, as in Default.
func normalize(c *Config, ls []field) {
	root := reflect.ValueOf(c).Elem()
	for _, f := range ls {
		if v := root.FieldByIndex(f.index); v.Kind() == reflect.Slice && v.Len() == 0 {
			v.SetZero()
		}
	}
}

// readFile reads a configuration file. A missing implicit file is not an error (found is false).
func readFile(path string, explicit bool) (data []byte, found bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("config: open file: %w", err)
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("config: read file %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, false, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize)}
	}
	return data, true, nil
}

// fileValues holds the settings found in a file and the line of every key, sections included.
type fileValues struct {
	values map[string]reflect.Value
	lines  map[string]int
}

// parseFile decodes a YAML configuration file strictly against Config.
func parseFile(file string, data []byte) (fileValues, error) {
	fv := fileValues{values: map[string]reflect.Value{}, lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return fv, nil // empty file
		}
		return fv, syntaxError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return fv, syntaxError(file, err)
		}
		return fv, &Error{File: file, Line: extra.Line, Msg: "a second YAML document; the file must hold one"}
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = dealias(doc.Content[0])
	}
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" || root.Kind == yaml.DocumentNode {
		return fv, nil // only comments
	}
	if root.Kind != yaml.MappingNode {
		return fv, &Error{File: file, Line: root.Line, Msg: "expected a mapping of keys to values, got " + describe(root)}
	}
	var p problems
	walkMapping(file, root, reflect.TypeFor[Config](), "", fv, &p)
	return fv, p.err()
}

var yamlLineRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to its scanner). For them
// yaml.v3 reports a 0-based line, and none at all for the first line.
var yamlParserProblems = []string{
	"did not find expected ',' or ']'",
	"did not find expected ',' or '}'",
	"did not find expected '-' indicator",
	"did not find expected <document start>",
	"did not find expected <stream-start>",
	"did not find expected key",
	"did not find expected node content",
	"found duplicate %TAG directive",
	"found duplicate %YAML directive",
	"found incompatible YAML document",
	"found undefined tag handle",
}

// syntaxError turns a YAML parser error into an *Error with the line, when the parser gave one.
func syntaxError(file string, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
		if slices.Contains(yamlParserProblems, msg) {
			line++
		}
	}
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg, cause: err}
}

// walkMapping checks the keys of a mapping against struct type t and records the values.
func walkMapping(file string, n *yaml.Node, t reflect.Type, prefix string, fv fileValues, p *problems) {
	known := map[string]field{}
	var names []string
	for _, f := range childFields(t, prefix, nil, 0) {
		known[f.name] = f
		names = append(names, f.name)
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := dealias(n.Content[i]), n.Content[i+1]
		fail := func(key string, line int, format string, args ...any) {
			*p = append(*p, &Error{File: file, Key: key, Line: line, Msg: fmt.Sprintf(format, args...)})
		}
		if kn.Kind != yaml.ScalarNode {
			fail(strings.TrimSuffix(prefix, "."), kn.Line, "expected a key name, got %s", describe(kn))
			continue
		}
		key := prefix + kn.Value
		f, ok := known[kn.Value]
		if !ok {
			fail(key, kn.Line, "unknown key%s", suggest(kn.Value, names, prefix))
			continue
		}
		if first, dup := seen[kn.Value]; dup {
			fail(key, kn.Line, "duplicate key (first on line %d)", first)
			continue
		}
		seen[kn.Value] = kn.Line
		fv.lines[key] = kn.Line
		if f.section {
			vn = dealias(vn)
			switch {
			case vn.Kind == yaml.MappingNode:
				walkMapping(file, vn, f.typ, key+".", fv, p)
			case vn.Kind == yaml.ScalarNode && vn.Tag == "!!null":
				// A section whose keys are all commented out.
			default:
				fail(key, vn.Line, "expected a section of keys, got %s", describe(vn))
			}
			continue
		}
		v, err := fromYAML(vn, f.typ)
		if err != nil {
			line := kn.Line
			if ve, ok := err.(*valueError); ok && ve.line > 0 {
				line = ve.line
			}
			fail(key, line, "%s", err)
			continue
		}
		fv.values[key] = v
	}
}

// suggest proposes the known name closest to an unknown one.
func suggest(name string, names []string, prefix string) string {
	best, bestDist := "", 3
	norm := strings.ToLower(strings.ReplaceAll(name, "-", "_"))
	for _, n := range names {
		d := editDistance(norm, n)
		if d < bestDist {
			best, bestDist = n, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", prefix+best)
}

// editDistance is the Levenshtein distance between a and b, capped for long inputs.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		if a == b {
			return 0
		}
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parseEnv reads the MADANG_<KEY> variables. The last entry for a name wins; an empty value
// counts as unset. It returns the values and, per key, the variable that set it.
func parseEnv(env []string, ls []field) (map[string]reflect.Value, map[string]string, error) {
	byName := make(map[string]field, len(ls))
	for _, f := range ls {
		byName[EnvVar(f.key)] = f
	}
	raw := map[string]string{}
	names := map[string]string{}
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		f, known := byName[name]
		if !ok || !known {
			continue
		}
		if val == "" {
			delete(raw, f.key)
			delete(names, f.key)
			continue
		}
		raw[f.key], names[f.key] = val, name
	}
	values := make(map[string]reflect.Value, len(raw))
	var p problems
	for _, f := range ls {
		s, ok := raw[f.key]
		if !ok {
			continue
		}
		v, err := fromString(s, f.typ)
		if err != nil {
			p.add(f.key, "environment variable %s: %s", names[f.key], err)
			continue
		}
		values[f.key] = v
	}
	return values, names, p.err()
}

// parseOverrides checks and converts the values of command-line flags.
func parseOverrides(overrides map[string]any, ls []field) (map[string]reflect.Value, error) {
	byKey := make(map[string]field, len(ls))
	for _, f := range ls {
		byKey[f.key] = f
	}
	values := make(map[string]reflect.Value, len(overrides))
	var p problems
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f, ok := byKey[k]
		if !ok {
			p.add(k, "unknown key (set by a command-line flag)")
			continue
		}
		v, err := fromAny(overrides[k], f.typ)
		if err != nil {
			p.add(k, "command-line flag: %s", err)
			continue
		}
		values[k] = v
	}
	return values, p.err()
}
