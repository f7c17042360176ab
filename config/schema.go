package config

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// field describes one key of Config, found by reflection: a section (a nested struct) or a leaf
// setting.
type field struct {
	key     string // dotted key, e.g. "connmgr.high_water"
	name    string // last component of key
	depth   int    // 0 for top-level keys
	index   []int  // index path for reflect.Value.FieldByIndex
	typ     reflect.Type
	doc     string
	section bool

	yamlTag, mapstructureTag string // raw tags, for checkSchema
}

// fields returns every key of Config in declaration order, each section before its children.
func fields() []field {
	var out []field
	var walk func(t reflect.Type, prefix string, index []int, depth int)
	walk = func(t reflect.Type, prefix string, index []int, depth int) {
		for _, f := range childFields(t, prefix, index, depth) {
			out = append(out, f)
			if f.section {
				walk(f.typ, f.key+".", f.index, depth+1)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil, 0)
	return out
}

// leaves returns the settings of Config (no sections) in declaration order.
func leaves() []field {
	return slices.DeleteFunc(fields(), func(f field) bool { return f.section })
}

// childFields returns the direct children of struct type t.
func childFields(t reflect.Type, prefix string, index []int, depth int) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		yamlTag := sf.Tag.Get("yaml")
		name, _, _ := strings.Cut(yamlTag, ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(sf.Name)
		}
		out = append(out, field{
			key:             prefix + name,
			name:            name,
			depth:           depth,
			index:           append(slices.Clip(index), i),
			typ:             sf.Type,
			doc:             sf.Tag.Get("doc"),
			section:         sf.Type.Kind() == reflect.Struct,
			yamlTag:         yamlTag,
			mapstructureTag: sf.Tag.Get("mapstructure"),
		})
	}
	return out
}

// EnvVar returns the environment variable that sets key: MADANG_ followed by the key in upper
// case with dots replaced by underscores, e.g. MADANG_CONNMGR_HIGH_WATER.
func EnvVar(key string) string {
	return "MADANG_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys returns every dotted key, sorted.
func Keys() []string {
	var keys []string
	for _, f := range leaves() {
		keys = append(keys, f.key)
	}
	slices.Sort(keys)
	return keys
}

var keyNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// checkSchema reports mistakes in the declaration of Config that the reflection machinery cannot
// handle. It is run by the tests.
func checkSchema() []string {
	var out []string
	envs := map[string]string{}
	for _, f := range fields() {
		if f.doc == "" {
			out = append(out, fmt.Sprintf("%s: missing doc tag", f.key))
		}
		name, _, _ := strings.Cut(f.yamlTag, ",")
		if name == "" || name != f.mapstructureTag {
			out = append(out, fmt.Sprintf("%s: yaml tag %q and mapstructure tag %q must name the same key", f.key, f.yamlTag, f.mapstructureTag))
		}
		if !keyNameRE.MatchString(f.name) {
			out = append(out, fmt.Sprintf("%s: key must be snake_case", f.key))
		}
		if f.section {
			continue
		}
		if kindOf(f.typ) == kindUnsupported {
			out = append(out, fmt.Sprintf("%s: unsupported type %s", f.key, f.typ))
		}
		env := EnvVar(f.key)
		if other, dup := envs[env]; dup {
			out = append(out, fmt.Sprintf("%s and %s share the environment variable %s", other, f.key, env))
		}
		envs[env] = f.key
	}
	return out
}

// valueKind classifies the Go types a setting may have.
type valueKind int

const (
	kindUnsupported valueKind = iota
	kindString
	kindBool
	kindInt
	kindUint
	kindFloat
	kindDuration
	kindStrings
)

func kindOf(t reflect.Type) valueKind {
	if t == reflect.TypeFor[time.Duration]() {
		return kindDuration
	}
	switch t.Kind() {
	case reflect.String:
		return kindString
	case reflect.Bool:
		return kindBool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return kindInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return kindUint
	case reflect.Float32, reflect.Float64:
		return kindFloat
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			return kindStrings
		}
	}
	return kindUnsupported
}

// expected describes what a value of kind k looks like, for error messages.
func (k valueKind) expected() string {
	switch k {
	case kindString:
		return "a string"
	case kindBool:
		return "a boolean (true or false)"
	case kindInt:
		return "an integer"
	case kindUint:
		return "a non-negative integer"
	case kindFloat:
		return "a number"
	case kindDuration:
		return "a duration such as 90s, 5m or 1h30m"
	case kindStrings:
		return "a list of strings"
	default:
		return "a value of a supported type"
	}
}

// yamlTags are the YAML tags accepted for a scalar of each kind.
func (k valueKind) yamlTags() []string {
	switch k {
	case kindString, kindDuration:
		return []string{"!!str"}
	case kindBool:
		return []string{"!!bool"}
	case kindInt, kindUint:
		return []string{"!!int"}
	case kindFloat:
		return []string{"!!float", "!!int"}
	default:
		return nil
	}
}

// valueError is a conversion failure; line is the YAML line of the offending node, if any.
type valueError struct {
	line int
	msg  string
}

func (e *valueError) Error() string { return e.msg }

func mismatch(k valueKind, got string) *valueError {
	return &valueError{msg: fmt.Sprintf("expected %s, got %s", k.expected(), got)}
}

// fromYAML converts a YAML node to a value of type t. Only the node's own tag counts: a quoted
// "8" is not an integer and 1 is not a duration, so a value means the same to every reader.
func fromYAML(n *yaml.Node, t reflect.Type) (reflect.Value, error) {
	n = dealias(n)
	k := kindOf(t)
	if k == kindStrings {
		if n.Kind != yaml.SequenceNode {
			return reflect.Value{}, &valueError{line: n.Line, msg: fmt.Sprintf("expected %s, got %s%s", k.expected(), describe(n), listHint(n))}
		}
		out := reflect.MakeSlice(t, 0, len(n.Content))
		for i, item := range n.Content {
			item = dealias(item)
			if item.Kind != yaml.ScalarNode || item.Tag != "!!str" {
				return reflect.Value{}, &valueError{line: item.Line, msg: fmt.Sprintf("item %d: expected a string, got %s", i+1, describe(item))}
			}
			out = reflect.Append(out, reflect.ValueOf(item.Value).Convert(t.Elem()))
		}
		return out, nil
	}
	if k == kindDuration && n.Kind == yaml.ScalarNode && n.Tag == "!!int" && n.Value == "0" {
		return reflect.Zero(t), nil
	}
	if n.Kind != yaml.ScalarNode || !slices.Contains(k.yamlTags(), n.Tag) {
		e := mismatch(k, describe(n))
		e.line = n.Line
		return reflect.Value{}, e
	}
	var (
		v   reflect.Value
		err error
	)
	switch k {
	case kindString:
		v = reflect.ValueOf(n.Value).Convert(t)
	case kindDuration:
		v, err = fromString(n.Value, t)
	default:
		// The tag is right; yaml.v3 parses the number or boolean and reports overflow.
		p := reflect.New(t)
		if err = n.Decode(p.Interface()); err != nil {
			err = &valueError{msg: fmt.Sprintf("%s is out of range for %s", n.Value, k.expected())}
		}
		v = p.Elem()
	}
	if err != nil {
		var ve *valueError
		if e, ok := err.(*valueError); ok {
			ve = e
		} else {
			ve = &valueError{msg: err.Error()}
		}
		ve.line = n.Line
		return reflect.Value{}, ve
	}
	return v, nil
}

// listHint suggests the list syntax for a scalar where a list is expected.
func listHint(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.ScalarNode && n.Tag == "!!null":
		return " (write [] for an empty list)"
	case n.Kind == yaml.ScalarNode:
		return " (write a list: [a, b] or one \"- item\" per line)"
	default:
		return ""
	}
}

// fromString converts the text of an environment variable or a string flag to type t. Lists are
// comma-separated; blanks around items and empty items are dropped.
func fromString(s string, t reflect.Type) (reflect.Value, error) {
	k := kindOf(t)
	bad := func() (reflect.Value, error) { return reflect.Value{}, mismatch(k, quote(s)) }
	v := reflect.New(t).Elem()
	switch k {
	case kindString:
		v.SetString(s)
	case kindBool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return bad()
		}
		v.SetBool(b)
	case kindInt:
		i, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return bad()
		}
		v.SetInt(i)
	case kindUint:
		u, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return bad()
		}
		v.SetUint(u)
	case kindFloat:
		f, err := strconv.ParseFloat(s, t.Bits())
		if err != nil {
			return bad()
		}
		v.SetFloat(f)
	case kindDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return bad()
		}
		v.SetInt(int64(d))
	case kindStrings:
		items := splitList(s)
		v = reflect.MakeSlice(t, 0, len(items))
		for _, item := range items {
			v = reflect.Append(v, reflect.ValueOf(item).Convert(t.Elem()))
		}
	default:
		return bad()
	}
	return v, nil
}

// splitList splits a comma-separated list, trimming blanks and dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// fromAny converts a value set by a command-line flag to type t. Besides values of the right
// kind it accepts strings, parsed like environment variables.
func fromAny(x any, t reflect.Type) (reflect.Value, error) {
	k := kindOf(t)
	if s, ok := x.(string); ok {
		return fromString(s, t)
	}
	if x == nil {
		return reflect.Value{}, mismatch(k, "nothing")
	}
	rv := reflect.ValueOf(x)
	bad := func() (reflect.Value, error) { return reflect.Value{}, mismatch(k, fmt.Sprintf("%T %v", x, x)) }
	v := reflect.New(t).Elem()
	switch k {
	case kindBool:
		if rv.Kind() != reflect.Bool {
			return bad()
		}
		v.SetBool(rv.Bool())
	case kindDuration:
		if rv.Type() != reflect.TypeFor[time.Duration]() {
			return bad()
		}
		v.SetInt(rv.Int())
	case kindInt, kindUint, kindFloat:
		switch kindOf(rv.Type()) {
		case kindInt, kindUint, kindFloat:
			// Range and integrality are checked by parsing the decimal form.
			if v, err := fromString(fmt.Sprint(x), t); err == nil {
				return v, nil
			}
		}
		return bad()
	case kindStrings:
		if rv.Kind() != reflect.Slice || rv.Type().Elem().Kind() != reflect.String {
			return bad()
		}
		v = reflect.MakeSlice(t, 0, rv.Len())
		for i := range rv.Len() {
			v = reflect.Append(v, rv.Index(i).Convert(t.Elem()))
		}
	default:
		return bad()
	}
	return v, nil
}

// dealias follows YAML aliases to the anchored node.
func dealias(n *yaml.Node) *yaml.Node {
	for range 16 {
		if n.Kind != yaml.AliasNode || n.Alias == nil {
			return n
		}
		n = n.Alias
	}
	return n
}

// describe names what a YAML node holds, for error messages.
func describe(n *yaml.Node) string {
	n = dealias(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "nothing (null)"
		case "!!str":
			return "the string " + quote(n.Value)
		case "!!int":
			return "the integer " + short(n.Value)
		case "!!float":
			return "the number " + short(n.Value)
		case "!!bool":
			return "the boolean " + short(n.Value)
		default:
			return fmt.Sprintf("a value tagged %s", short(n.Tag))
		}
	default:
		return "an unsupported YAML node"
	}
}

// short truncates s for an error message.
func short(s string) string {
	const limit = 64
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	return string([]rune(s)[:limit]) + "…"
}

// quote quotes s, truncated, for an error message.
func quote(s string) string {
	if utf8.RuneCountInString(s) > 64 {
		return strconv.Quote(string([]rune(s)[:64])) + "…"
	}
	return strconv.Quote(s)
}

// nest turns dotted keys into the nested maps viper expects.
func nest(values map[string]reflect.Value) map[string]any {
	root := map[string]any{}
	for key, v := range values {
		m := root
		parts := strings.Split(key, ".")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := m[p].(map[string]any)
			if !ok {
				sub = map[string]any{}
				m[p] = sub
			}
			m = sub
		}
		m[parts[len(parts)-1]] = v.Interface()
	}
	return root
}
