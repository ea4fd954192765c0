package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// Keys and checkpoints use the signed-note format of golang.org/x/mod/sumdb/note
// (C2SP signed-note), and the checkpoint body the C2SP tlog-checkpoint layout,
// so that existing note verifiers can check a checkpoint copied out of the log:
//
//	private key file: PRIVATE+KEY+<name>+<key id>+<base64(0x01 || ed25519 seed)>
//	public key file:  <name>+<key id>+<base64(0x01 || ed25519 public key)>
//	key id:           hex of the first 4 bytes of sha256(name "\n" 0x01 public key)
//
// The checkpoint's "root hash" line is the hash of the chain head (this log is
// a hash chain, not a Merkle tree: a witness can check the signature, not a
// consistency proof).

// KeyName names the audit signing key in key files and signature lines.
const KeyName = "parachute-audit"

// PublicKeySuffix is appended to the private key's path to name its public key.
const PublicKeySuffix = ".pub"

// KeyFileName is the default name of the private key in the state dir, and
// PublicKeyFileName that of its public key.
const (
	KeyFileName       = "audit-key"
	PublicKeyFileName = KeyFileName + PublicKeySuffix
)

const algEd25519 = 1

// ErrKey wraps every problem with a key file.
var ErrKey = errors.New("audit key")

// Signer signs checkpoints with an ed25519 key read from a file outside the
// audit folder.
type Signer struct {
	Path string // the private key file
	pub  PublicKey
	priv ed25519.PrivateKey
}

// Public returns the signer's public key.
func (s *Signer) Public() PublicKey { return s.pub }

// PublicKey verifies checkpoints.
type PublicKey struct {
	Name string
	ID   uint32
	Key  ed25519.PublicKey
}

// KeyID is the key's id as printed: 8 hex digits.
func (k PublicKey) KeyID() string { return fmt.Sprintf("%08x", k.ID) }

// String is the verifier key line (the content of the .pub file).
func (k PublicKey) String() string {
	return k.Name + "+" + k.KeyID() + "+" + base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, k.Key...))
}

func keyID(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{algEd25519})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// ParsePublicKey reads a verifier key line.
func ParsePublicKey(s string) (PublicKey, error) {
	s = strings.TrimSpace(s)
	name, rest, ok1 := strings.Cut(s, "+")
	id, enc, ok2 := strings.Cut(rest, "+")
	if !ok1 || !ok2 || name == "" || len(id) != 8 {
		return PublicKey{}, fmt.Errorf("%w: not a verifier key (want <name>+<8 hex>+<base64>)", ErrKey)
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algEd25519 {
		return PublicKey{}, fmt.Errorf("%w: not an ed25519 verifier key", ErrKey)
	}
	k := PublicKey{Name: name, Key: ed25519.PublicKey(raw[1:])}
	k.ID = keyID(name, k.Key)
	if k.KeyID() != id {
		return PublicKey{}, fmt.Errorf("%w: key id %s does not match the key (%s)", ErrKey, id, k.KeyID())
	}
	return k, nil
}

func parsePrivateKey(s string) (*Signer, error) {
	s = strings.TrimSpace(s)
	rest, ok := strings.CutPrefix(s, "PRIVATE+KEY+")
	parts := strings.SplitN(rest, "+", 3)
	if !ok || len(parts) != 3 || parts[0] == "" {
		return nil, fmt.Errorf("%w: not a private key (want PRIVATE+KEY+<name>+<8 hex>+<base64>)", ErrKey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != algEd25519 {
		return nil, fmt.Errorf("%w: not an ed25519 private key", ErrKey)
	}
	priv := ed25519.NewKeyFromSeed(raw[1:])
	pub := PublicKey{Name: parts[0], Key: priv.Public().(ed25519.PublicKey)}
	pub.ID = keyID(pub.Name, pub.Key)
	if pub.KeyID() != parts[1] {
		return nil, fmt.Errorf("%w: key id %s does not match the key (%s)", ErrKey, parts[1], pub.KeyID())
	}
	return &Signer{pub: pub, priv: priv}, nil
}

func (s *Signer) privateString() string {
	return "PRIVATE+KEY+" + s.pub.Name + "+" + s.pub.KeyID() + "+" +
		base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, s.priv.Seed()...))
}

// OpenKey reads the private key at path, creating it (mode 0600, with its
// public key beside it at path+".pub") if it does not exist. The file is
// opened without following a symlink and must be a regular file owned by
// this user that no one else can read or write.
func OpenKey(path string) (*Signer, error) {
	path, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	b, err := readPrivate(path)
	if errors.Is(err, os.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, err
	}
	s, err := parsePrivateKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.Path = path
	// The public key is derived; restore it if it is missing, refuse one that
	// names another key (a verifier reading it would be misled).
	pubPath := path + PublicKeySuffix
	if pb, err := os.ReadFile(pubPath); err == nil {
		if got, err := ParsePublicKey(string(pb)); err != nil || got.String() != s.pub.String() {
			return nil, fmt.Errorf("%w: %s does not hold the public key of %s; remove it and it is written again", ErrKey, pubPath, path)
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if err := writeNew(pubPath, []byte(s.pub.String()+"\n"), 0o644); err != nil {
			return nil, err
		}
	} else {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	return s, nil
}

func readPrivate(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%w: %s is a symbolic link; point the config at the key file itself", ErrKey, path)
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrKey, path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s is readable or writable by others (mode %04o); chmod 600 it", ErrKey, path, st.Mode().Perm())
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("%w: %s is owned by uid %d, not by this user (%d)", ErrKey, path, sys.Uid, os.Geteuid())
	}
	return io.ReadAll(io.LimitReader(f, 4096))
}

func createKey(path string) (*Signer, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	s := &Signer{Path: path, priv: priv, pub: PublicKey{Name: KeyName, Key: priv.Public().(ed25519.PublicKey)}}
	s.pub.ID = keyID(s.pub.Name, s.pub.Key)
	// A stale public key of an earlier, lost private key must not survive.
	if err := os.Remove(path + PublicKeySuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrKey, err)
	}
	if err := writeNew(path, []byte(s.privateString()+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(path+PublicKeySuffix, []byte(s.pub.String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

// writeNew creates path (refusing one that exists, or a link), writes b and
// makes file and folder entry durable.
func writeNew(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	if _, err = f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// LoadPublicKey reads a verifier key file (the .pub beside the private key).
func LoadPublicKey(path string) (PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicKey{}, fmt.Errorf("%w: %w", ErrKey, err)
	}
	k, err := ParsePublicKey(string(b))
	if err != nil {
		return PublicKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// Checkpoint is what a checkpoint signs: the chain head (the last record
// before the checkpoint record), when, and how many records may follow before
// the next checkpoint is due.
type Checkpoint struct {
	Origin   string
	Size     uint64 // seq of the head signed; the checkpoint record itself is Size+1
	Hash     string // hex hash of that record (Genesis for an empty log)
	Time     time.Time
	Interval uint64 // the next checkpoint comes within this many records
	KeyID    uint32
}

// body renders the signed text (C2SP tlog-checkpoint with two extension lines).
func (c Checkpoint) body() (string, error) {
	h, err := hex.DecodeString(c.Hash)
	if err != nil || len(h) != sha256.Size {
		return "", fmt.Errorf("checkpoint hash %q is not a sha256", c.Hash)
	}
	return fmt.Sprintf("%s\n%d\n%s\ntime %s\ninterval %d\n", c.Origin, c.Size,
		base64.StdEncoding.EncodeToString(h), c.Time.UTC().Format(time.RFC3339Nano), c.Interval), nil
}

// sign renders c as a signed note.
func (s *Signer) sign(c Checkpoint) (string, error) {
	text, err := c.body()
	if err != nil {
		return "", err
	}
	sig := ed25519.Sign(s.priv, []byte(text))
	var id [4]byte
	binary.BigEndian.PutUint32(id[:], s.pub.ID)
	return text + "\n\u2014 " + s.pub.Name + " " + base64.StdEncoding.EncodeToString(append(id[:], sig...)) + "\n", nil
}

// ErrSignature is a checkpoint whose signature does not verify.
var ErrSignature = errors.New("checkpoint signature does not verify")

// ParseCheckpoint reads a signed note without checking its signature; it
// returns the checkpoint, the signed text and the signature of the first
// signature line.
func ParseCheckpoint(note string) (Checkpoint, []byte, string, error) {
	var c Checkpoint
	bad := func(what string) (Checkpoint, []byte, string, error) {
		return c, nil, "", fmt.Errorf("not a checkpoint: %s", what)
	}
	if !utf8.ValidString(note) || !strings.HasSuffix(note, "\n") {
		return bad("not UTF-8 text ending in a newline")
	}
	text, sigs, ok := strings.Cut(note, "\n\n")
	if !ok {
		return bad("no signature")
	}
	text += "\n"
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 5 {
		return bad(fmt.Sprintf("%d lines, want 5", len(lines)))
	}
	c.Origin = lines[0]
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return bad("size is not a number")
	}
	c.Size = size
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != sha256.Size {
		return bad("hash is not a base64 sha256")
	}
	c.Hash = hex.EncodeToString(h)
	ts, ok := strings.CutPrefix(lines[3], "time ")
	if c.Time, err = time.Parse(time.RFC3339Nano, ts); !ok || err != nil {
		return bad("no time line")
	}
	iv, ok := strings.CutPrefix(lines[4], "interval ")
	if c.Interval, err = strconv.ParseUint(iv, 10, 64); !ok || err != nil {
		return bad("no interval line")
	}
	// One signature line: "— <name> <base64(key id || signature)>".
	sigLine, rest, _ := strings.Cut(sigs, "\n")
	if rest != "" {
		return bad("more than one signature")
	}
	fields := strings.Fields(strings.TrimPrefix(sigLine, "\u2014 "))
	if !strings.HasPrefix(sigLine, "\u2014 ") || len(fields) != 2 {
		return bad("malformed signature line")
	}
	raw, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil || len(raw) != 4+ed25519.SignatureSize {
		return bad("malformed signature")
	}
	c.KeyID = binary.BigEndian.Uint32(raw[:4])
	return c, []byte(text), fields[0] + " " + fields[1], nil
}

// VerifyCheckpoint parses note and checks its signature with k.
func VerifyCheckpoint(note string, k PublicKey) (Checkpoint, error) {
	c, text, sig, err := ParseCheckpoint(note)
	if err != nil {
		return c, err
	}
	name, enc, _ := strings.Cut(sig, " ")
	raw, _ := base64.StdEncoding.DecodeString(enc)
	if name != k.Name || c.KeyID != k.ID {
		return c, fmt.Errorf("%w: signed by key %s+%08x, not by %s+%s", ErrSignature, name, c.KeyID, k.Name, k.KeyID())
	}
	if !ed25519.Verify(k.Key, text, raw[4:]) {
		return c, ErrSignature
	}
	return c, nil
}
