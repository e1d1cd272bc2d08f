/* The one-file launcher of octo-appliance: unpack once, start from the cache ever after.
 *
 * The executable is this program followed by a payload (the PyInstaller one-folder build, each
 * file an xz stream: LZMA2, with the x86 filter for machine code) and a trailer naming the payload's SHA-256 (computed at build time).
 * PyInstaller's own one-file bootloader unpacks all of its 54 MiB into a fresh temp dir at
 * every start and deletes it at exit, which cost more than everything `--help` does. This
 * launcher unpacks into <cache>/octo-appliance/<sha256>/ the first time only, then execs the
 * unpacked program; the next starts find the folder and exec at once.
 *
 * <cache> is $XDG_CACHE_HOME, else $HOME/.cache, else /tmp/octo-appliance-<uid>. Why it is safe
 * (docs/executable-cache.md): the folder holding the unpacked builds must be a real directory
 * owned by this user and writable by nobody else, or the launcher refuses to use it; a build is
 * unpacked into a private temp folder beside its final name and renamed into place only when
 * complete, so a concurrent first start either wins the rename or uses the winner's copy, and
 * no half-written build is ever run.
 *
 * Build: gcc -O2 -s -o octo-launcher octo_launcher.c -l:liblzma.a (build/build_appliance.sh does
 * it; liblzma is linked in, so the launcher needs nothing beyond the C library).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <pwd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <lzma.h>

#define MAGIC "OCTOSFX1"
#define KEY_LEN 64
#define PROGRAM "octo-appliance"

struct trailer {
    char magic[8];
    uint64_t payload_offset;
    char key[KEY_LEN];
};

struct entry {
    uint32_t kind; /* 0 file, 1 directory, 2 symlink */
    uint32_t mode;
    uint32_t name_len;
    uint32_t crc;
    uint64_t packed_len;
    uint64_t size;
};

/* the private folder being unpacked into, removed if the launcher stops half-way */
static char unpacking[PATH_MAX];

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void die(const char *what, const char *detail) {
    if (unpacking[0]) nftw(unpacking, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    fprintf(stderr, "error: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    fprintf(stderr, "hint: set XDG_CACHE_HOME to a directory only you can write "
                    "(see docs/executable-cache.md)\n");
    exit(70);
}

static int read_full(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* out = a/b, or stop when it does not fit (a path cut short could name another file). */
static void join(char *out, size_t size, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb + 1 > size) die("a path is too long", a);
    memcpy(out, a, la);
    out[la] = '/';
    memcpy(out + la + 1, b, lb + 1);
}

/* Whether a packed name could leave the folder it is unpacked into. */
static int escapes(const char *name) {
    if (name[0] == '/') return 1;
    for (const char *p = name; p; p = strchr(p, '/')) {
        if (*p == '/') p++;
        if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0')) return 1;
    }
    return 0;
}

/* A directory this user owns and nobody else may write: created 0700 when missing. */
static int private_dir(const char *path) {
    struct stat st;
    if (mkdir(path, 0700) != 0 && errno != EEXIST) return -1;
    if (lstat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 0022)) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

/* mkdir -p of every folder above path (the ones it creates: 0700). */
static int make_parents(char *path) {
    for (char *p = path + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return -1;
    }
    return 0;
}

/* The folder that holds unpacked builds (0700, ours), written into out. */
static void cache_root(char *out, size_t size) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char base[PATH_MAX];
    if (xdg && xdg[0] == '/') {
        if (strlen(xdg) >= sizeof base) die("XDG_CACHE_HOME is too long", NULL);
        strcpy(base, xdg);
    } else {
        if (!home || home[0] != '/') {
            struct passwd *pw = getpwuid(geteuid());
            home = pw ? pw->pw_dir : NULL;
        }
        struct stat st;
        if (home && home[0] == '/' && stat(home, &st) == 0 && st.st_uid == geteuid()) {
            join(base, sizeof base, home, ".cache");
        } else {
            /* no home of our own (a service account): a per-user folder in /tmp, like tmux */
            snprintf(out, size, "/tmp/octo-appliance-%u", (unsigned)geteuid());
            if (private_dir(out) != 0) die("cannot use the cache folder", out);
            return;
        }
    }
    join(out, size, base, "octo-appliance");
    if (make_parents(out) != 0) die("cannot create the cache folder", base);
    if (private_dir(out) != 0) die("the cache folder is not private to this user", out);
}

static int unpack_file(int in, const struct entry *e, const char *path) {
    int out = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, e->mode & 0700);
    if (out < 0) return -1;
    static uint8_t inbuf[1 << 16], outbuf[1 << 17];
    lzma_stream z = LZMA_STREAM_INIT;
    /* no memory limit: the packer sizes each file's dictionary to the file (at most 64 MiB) */
    if (lzma_stream_decoder(&z, UINT64_MAX, 0) != LZMA_OK) return -1;
    uint64_t left = e->packed_len;
    uint32_t crc = 0;
    lzma_ret rc = LZMA_OK;
    while (rc != LZMA_STREAM_END) {
        if (z.avail_in == 0 && left > 0) {
            size_t chunk = left < sizeof inbuf ? (size_t)left : sizeof inbuf;
            if (read_full(in, inbuf, chunk) != 0) break;
            left -= chunk;
            z.next_in = inbuf;
            z.avail_in = chunk;
        }
        z.next_out = outbuf;
        z.avail_out = sizeof outbuf;
        rc = lzma_code(&z, left > 0 ? LZMA_RUN : LZMA_FINISH);
        if (rc != LZMA_OK && rc != LZMA_STREAM_END) break;
        size_t got = sizeof outbuf - z.avail_out;
        crc = lzma_crc32(outbuf, got, crc);
        if (write_full(out, outbuf, got) != 0) break;
    }
    uint64_t total = z.total_out;
    lzma_end(&z);
    if (left != 0 || z.avail_in != 0 || rc != LZMA_STREAM_END || total != e->size ||
        crc != e->crc) {
        close(out);
        errno = EILSEQ;
        return -1;
    }
    return close(out);
}

/* Unpack the payload into a private temp folder inside root and rename it to final. */
static void unpack(int in, const struct trailer *t, const char *root, const char *final) {
    char tmp[PATH_MAX];
    join(tmp, sizeof tmp, root, ".unpacking-XXXXXX");
    if (!mkdtemp(tmp)) die("cannot create a folder in the cache", root);
    memcpy(unpacking, tmp, sizeof unpacking);
    if (lseek(in, (off_t)t->payload_offset, SEEK_SET) < 0) die("cannot read the payload", NULL);
    for (;;) {
        struct entry e;
        if (read_full(in, &e, sizeof e) != 0) die("the executable is truncated", NULL);
        if (e.kind == 3) break; /* end */
        char name[PATH_MAX], path[PATH_MAX];
        if (e.name_len == 0 || e.name_len >= sizeof name || read_full(in, name, e.name_len) != 0)
            die("the executable is damaged", "bad entry name");
        name[e.name_len] = '\0';
        if (escapes(name)) die("the executable is damaged", name);
        join(path, sizeof path, tmp, name);
        if (make_parents(path) != 0) die("cannot unpack", path);
        int rc = 0;
        if (e.kind == 1) {
            rc = mkdir(path, 0700) == 0 || errno == EEXIST ? 0 : -1;
        } else if (e.kind == 2) {
            char target[PATH_MAX];
            if (e.packed_len >= sizeof target || read_full(in, target, e.packed_len) != 0)
                die("the executable is damaged", name);
            target[e.packed_len] = '\0';
            rc = symlink(target, path);
        } else {
            rc = unpack_file(in, &e, path);
        }
        if (rc != 0) die("cannot unpack", path);
    }
    int dir = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        syncfs(dir); /* the rename below must never expose files whose data is not on disk */
        close(dir);
    }
    if (rename(tmp, final) != 0) {
        /* a concurrent first start renamed its copy first: use it, drop ours */
        if (errno != EEXIST && errno != ENOTEMPTY) die("cannot unpack", final);
        nftw(tmp, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    }
    unpacking[0] = '\0';
}

int main(int argc, char **argv) {
    (void)argc;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) die("cannot find this executable", "/proc/self/exe");
    self[n] = '\0';
    int in = open(self, O_RDONLY | O_CLOEXEC);
    struct stat st;
    struct trailer t;
    if (in < 0 || fstat(in, &st) != 0 || st.st_size < (off_t)sizeof t) die("cannot read", self);
    if (pread(in, &t, sizeof t, st.st_size - (off_t)sizeof t) != (ssize_t)sizeof t ||
        memcmp(t.magic, MAGIC, 8) != 0)
        die("the executable carries no program (was it built by build_appliance.sh?)", self);
    for (int i = 0; i < KEY_LEN; i++)
        if (!strchr("0123456789abcdef", t.key[i])) die("the executable is damaged", "key");

    char root[PATH_MAX], final[PATH_MAX], program[PATH_MAX], key[KEY_LEN + 1];
    memcpy(key, t.key, KEY_LEN);
    key[KEY_LEN] = '\0';
    cache_root(root, sizeof root);
    join(final, sizeof final, root, key);
    struct stat fst;
    if (lstat(final, &fst) != 0) {
        unpack(in, &t, root, final);
    } else if (!S_ISDIR(fst.st_mode) || fst.st_uid != geteuid() || (fst.st_mode & 0022)) {
        die("the unpacked build is not private to this user", final);
    }
    close(in);
    join(program, sizeof program, final, PROGRAM);
    /* the program learns where it really lives (plugins beside the executable, messages) */
    setenv("OCTO_EXECUTABLE", self, 1);
    execv(program, argv);
    die("cannot start the unpacked program", program);
    return 70;
}
