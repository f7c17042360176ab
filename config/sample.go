package config

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

const sampleHeader = `# Madang configuration.
#
# Every key is listed with its default value; change what you need and delete the rest.
# Precedence, lowest first: built-in defaults, this file, environment variables, command-line flags.
# The environment variable for a key is MADANG_ followed by the key in upper case with dots
# replaced by underscores, e.g. MADANG_API_LISTEN or MADANG_CONNMGR_HIGH_WATER; lists are
# comma-separated there. Durations are written like 90s, 5m, 1h30m or 168h.
`

// Sample returns a commented YAML file holding every key with its default value. Loading it
// yields exactly Default(). `madang init` writes it as <home>/config.yaml.
func Sample() []byte {
	var b bytes.Buffer
	b.WriteString(sampleHeader)
	render(&b, Default(), true)
	return b.Bytes()
}

// YAML returns the configuration as YAML, every key included, without comments.
func (c Config) YAML() []byte {
	var b bytes.Buffer
	render(&b, c, false)
	return b.Bytes()
}

// render writes c as YAML, with each key's doc as a comment above it if comments is set.
func render(b *bytes.Buffer, c Config, comments bool) {
	root := reflect.ValueOf(c)
	afterSection := false
	for _, f := range fields() {
		indent := strings.Repeat("  ", f.depth)
		if comments {
			if !afterSection {
				b.WriteString("\n")
			}
			if f.section && f.depth == 0 {
				b.WriteString("# ---- " + f.key + " " + strings.Repeat("-", max(3, 70-len(f.key))) + "\n")
			}
			for _, line := range wrap(f.doc, 96-len(indent)) {
				b.WriteString(indent + "# " + line + "\n")
			}
		}
		afterSection = f.section
		b.WriteString(indent + f.name + ":")
		if !f.section {
			b.WriteString(renderValue(root.FieldByIndex(f.index), indent))
		}
		b.WriteString("\n")
	}
}

// renderValue renders a setting for the position after "key:".
func renderValue(v reflect.Value, indent string) string {
	switch kindOf(v.Type()) {
	case kindStrings:
		if v.Len() == 0 {
			return " []"
		}
		var b strings.Builder
		for i := range v.Len() {
			b.WriteString("\n" + indent + "  - " + yamlString(v.Index(i).String()))
		}
		return b.String()
	case kindString:
		return " " + yamlString(v.String())
	case kindBool:
		return " " + strconv.FormatBool(v.Bool())
	case kindDuration:
		return " " + formatDuration(time.Duration(v.Int()))
	case kindInt:
		return " " + strconv.FormatInt(v.Int(), 10)
	case kindUint:
		return " " + strconv.FormatUint(v.Uint(), 10)
	case kindFloat:
		return " " + yamlFloat(v.Float())
	default:
		return " null # unsupported type " + v.Type().String()
	}
}

// yamlString renders s as a YAML scalar that reads back as the string s, quoted when needed.
func yamlString(s string) string {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	out, err := yaml.Marshal(n)
	if err == nil && bytes.Count(out, []byte("\n")) > 1 {
		n.Style = yaml.DoubleQuotedStyle // one line, with escapes, instead of a block scalar
		out, err = yaml.Marshal(n)
	}
	if err != nil {
		return strconv.Quote(s)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// yamlFloat renders f so that YAML reads it back as a number.
func yamlFloat(f float64) string {
	out, err := yaml.Marshal(f)
	if err != nil {
		return strconv.FormatFloat(f, 'g', -1, 64)
	}
	return strings.TrimSuffix(string(out), "\n")
}

// formatDuration renders d without trailing zero units: 1m, 168h, 1h30m.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrap splits text into lines of at most width bytes, breaking at spaces.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, w := range strings.Fields(text) {
		if line != "" && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += w
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}
