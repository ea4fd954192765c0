package egress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// TLS constants the ClientHello reader needs (RFC 8446).
const (
	recordHandshake   = 22
	handshakeHello    = 1
	extServerName     = 0
	extECH            = 0xfe0d // encrypted_client_hello
	nameTypeHost      = 0
	maxRecordPayload  = 1<<14 + 256 // TLSPlaintext limit, with the slack TLS 1.2 allows
	maxClientHelloLen = 1 << 16     // a hello with post-quantum key shares is a few KiB
)

// clientHello is what the proxy reads from the first flight of a tunnel.
type clientHello struct {
	serverName string // "" when the hello names none
	ech        bool   // an encrypted_client_hello extension: the real name is hidden
}

// readClientHello reads one TLS ClientHello, which may span several
// handshake records, and returns the exact bytes read (to forward
// unchanged) and what it says. It is strict where a server might read the
// same bytes differently: a second server_name extension, a second host
// name, an unknown name type, trailing bytes or a hello that is not the
// only handshake message read are errors, so the name checked is the only
// name the upstream can see.
func readClientHello(r *bufio.Reader) ([]byte, clientHello, error) {
	var raw, msg []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(r, hdr); err != nil {
			return raw, clientHello{}, fmt.Errorf("reading a TLS record: %w", err)
		}
		raw = append(raw, hdr...)
		if hdr[0] != recordHandshake || hdr[1] != 3 {
			return raw, clientHello{}, errors.New("the tunnel did not start with a TLS handshake record")
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		if n == 0 || n > maxRecordPayload {
			return raw, clientHello{}, fmt.Errorf("TLS record of %d bytes", n)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return raw, clientHello{}, fmt.Errorf("reading a TLS record: %w", err)
		}
		raw = append(raw, body...)
		msg = append(msg, body...)
		if len(msg) < 4 {
			continue
		}
		if msg[0] != handshakeHello {
			return raw, clientHello{}, fmt.Errorf("first handshake message is type %d, not a ClientHello", msg[0])
		}
		want := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if want > maxClientHelloLen {
			return raw, clientHello{}, fmt.Errorf("ClientHello of %d bytes", want)
		}
		switch {
		case len(msg) < want:
			continue
		case len(msg) > want:
			return raw, clientHello{}, errors.New("bytes after the ClientHello in its records")
		}
		h, err := parseClientHello(msg[4:])
		return raw, h, err
	}
}

// parseClientHello reads the body of a ClientHello handshake message.
func parseClientHello(b []byte) (clientHello, error) {
	c := cursor{b: b}
	c.skip(2 + 32) // legacy_version, random
	c.vector(1)    // legacy_session_id
	c.vector(2)    // cipher_suites
	c.vector(1)    // legacy_compression_methods
	if c.err == nil && len(c.b) == 0 {
		return clientHello{}, nil // TLS 1.2 and older may omit extensions
	}
	exts := cursor{b: c.vector(2)}
	if c.err != nil || len(c.b) != 0 {
		return clientHello{}, errors.New("malformed ClientHello")
	}
	var h clientHello
	seen := map[uint16]bool{}
	for len(exts.b) > 0 && exts.err == nil {
		typ := exts.u16()
		data := exts.vector(2)
		if exts.err != nil {
			break
		}
		if seen[typ] {
			return clientHello{}, fmt.Errorf("extension %#04x appears twice", typ)
		}
		seen[typ] = true
		switch typ {
		case extECH:
			h.ech = true
		case extServerName:
			name, err := parseServerName(data)
			if err != nil {
				return clientHello{}, err
			}
			h.serverName = name
		}
	}
	if exts.err != nil {
		return clientHello{}, errors.New("malformed ClientHello extensions")
	}
	return h, nil
}

// parseServerName reads a server_name extension (RFC 6066 section 3): one
// host_name, ASCII, no trailing dot.
func parseServerName(data []byte) (string, error) {
	ext := cursor{b: data}
	list := cursor{b: ext.vector(2)}
	if ext.err != nil || len(ext.b) != 0 {
		return "", errors.New("malformed server_name extension")
	}
	var name string
	for len(list.b) > 0 && list.err == nil {
		typ := list.u8()
		v := list.vector(2)
		if list.err != nil {
			break
		}
		if typ != nameTypeHost {
			return "", fmt.Errorf("server_name of unknown type %d", typ)
		}
		if name != "" {
			return "", errors.New("server_name names two hosts")
		}
		name = string(v)
		if name == "" || strings.HasSuffix(name, ".") {
			return "", fmt.Errorf("server_name %q is not a host name", name)
		}
		for i := 0; i < len(name); i++ {
			if c := name[i]; c <= ' ' || c >= 0x7f {
				return "", fmt.Errorf("server_name %q is not a host name", name)
			}
		}
	}
	if list.err != nil || name == "" {
		return "", errors.New("malformed server_name extension")
	}
	return name, nil
}

// cursor reads big-endian fields; the first short read sets err and every
// later read returns zero values.
type cursor struct {
	b   []byte
	err error
}

func (c *cursor) take(n int) []byte {
	if c.err != nil || n > len(c.b) {
		c.err = io.ErrUnexpectedEOF
		return nil
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) skip(n int) { c.take(n) }

func (c *cursor) u8() int {
	if v := c.take(1); v != nil {
		return int(v[0])
	}
	return 0
}

func (c *cursor) u16() uint16 {
	if v := c.take(2); v != nil {
		return uint16(v[0])<<8 | uint16(v[1])
	}
	return 0
}

// vector reads a length-prefixed field whose length takes size bytes.
func (c *cursor) vector(size int) []byte {
	var n int
	switch size {
	case 1:
		n = c.u8()
	case 2:
		n = int(c.u16())
	}
	return c.take(n)
}
