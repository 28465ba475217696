/*
 * virt_cac: a virtual CAC in a vpcd virtual reader, for p11smime's tests.
 *
 * libcacard (Debian's libcacard-dev) emulates a CAC from the certificates and keys an NSS
 * database sees; this program hands that card to vsmartcard's vpcd, the pcscd reader driver
 * that shows "Virtual PCD" readers and takes its card over TCP. OpenSC's CAC driver then finds
 * a CAC in the virtual reader through a real pcscd.
 *
 * Usage: virt_cac NSSDB PORT [READER]
 *   NSSDB   an NSS database directory (sql: format); with use_hw=removable every removable
 *           token it sees becomes a card (SoftHSM2 added with modutil, its slots made
 *           removable with "slots.removable = true" in SOFTHSM2_CONF).
 *   PORT    vpcd's TCP port for the reader to plug the card into (on 127.0.0.1).
 *   READER  the libcacard reader (the NSS slot's name) to use; default: the first one that
 *           holds a card.
 * Prints "reader: NAME" and "atr: HEX" and "connected" on stdout as it gets there; serves vpcd
 * until vpcd hangs up (exit 0) or something fails (exit 1, reason on stderr). With
 * VIRT_CAC_TRACE set in the environment every APDU and response is logged on stderr.
 *
 * vpcd's protocol: each message is a 2-byte big-endian length and the data. A 1-byte message
 * is a control: 0 power off, 1 power on, 2 reset (no answer), 4 get the ATR (answer: the ATR).
 * Anything longer is a command APDU, answered with the response APDU.
 *
 * Written for this project (the open-source virt_cacard showed the pattern).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include <libcacard.h>

#define CONNECT_SECONDS 10
#define CARD_SECONDS 10
#define BUF_SIZE 65538

static int trace;

static void die(const char *what)
{
    fprintf(stderr, "virt_cac: %s\n", what);
    exit(1);
}

static void hex_line(FILE *out, const char *prefix, const unsigned char *data, int len)
{
    fputs(prefix, out);
    for (int i = 0; i < len; i++) {
        fprintf(out, "%02X", data[i]);
    }
    fputc('\n', out);
    fflush(out);
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* The reader named NAME, or the first that holds a card; waits for the NSS event thread to
 * find the token for up to CARD_SECONDS. */
static VReader *find_reader(const char *name)
{
    for (int tries = 0; tries < CARD_SECONDS * 10; tries++) {
        if (name != NULL) {
            VReader *r = vreader_get_reader_by_name(name);
            if (r != NULL && vreader_card_is_present(r) == VREADER_OK) {
                return r;
            }
            vreader_free(r);
        } else {
            VReaderList *list = vreader_get_reader_list();
            VReader *found = NULL;
            for (VReaderListEntry *e = vreader_list_get_first(list); e && !found;
                 e = vreader_list_get_next(e)) {
                VReader *r = vreader_list_get_reader(e);
                if (vreader_card_is_present(r) == VREADER_OK) {
                    found = r;
                } else {
                    vreader_free(r);
                }
            }
            vreader_list_delete(list);
            if (found) {
                return found;
            }
        }
        sleep_ms(100);
    }
    /* Say which readers there are, to help whoever reads the failure. */
    VReaderList *list = vreader_get_reader_list();
    fprintf(stderr, "virt_cac: readers libcacard has:\n");
    for (VReaderListEntry *e = vreader_list_get_first(list); e; e = vreader_list_get_next(e)) {
        VReader *r = vreader_list_get_reader(e);
        fprintf(stderr, "  \"%s\" (%s)\n", vreader_get_name(r),
                vreader_card_is_present(r) == VREADER_OK ? "card" : "no card");
        vreader_free(r);
    }
    vreader_list_delete(list);
    die(name ? "that reader has no card (is the token's slot removable?)"
             : "no reader with a card (is the token's slot removable, and in the NSS database?)");
    return NULL;
}

static int connect_vpcd(int port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; tries < CONNECT_SECONDS * 10; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) {
            die("socket failed");
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        close(fd);
        sleep_ms(100);
    }
    die("cannot connect to vpcd (is pcscd running with vpcd on that port?)");
    return -1;
}

/* 1: read LEN bytes; 0: the peer hung up; exits on errors. */
static int read_all(int fd, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        /* vpcd writes a message's length and its data in two sends, so with Nagle on its side
         * the data waits for our ACK of the length; a delayed ACK would cost ~40 ms a message.
         * Linux clears TCP_QUICKACK by itself, so set it before every read. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);
        ssize_t n = read(fd, buf + got, len - got);
        if (n == 0) {
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == ECONNRESET) {
                return 0;
            }
            die("read from vpcd failed");
        }
        got += (size_t)n;
    }
    return 1;
}

static void send_frame(int fd, const unsigned char *data, int len)
{
    unsigned char frame[BUF_SIZE];
    if (len < 0 || len > BUF_SIZE - 2) {
        die("response too long");
    }
    frame[0] = (unsigned char)(len >> 8);
    frame[1] = (unsigned char)(len & 0xff);
    memcpy(frame + 2, data, (size_t)len);
    size_t sent = 0, total = (size_t)len + 2;
    while (sent < total) {
        ssize_t n = write(fd, frame + sent, total - sent);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write to vpcd failed");
        }
        sent += (size_t)n;
    }
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s NSSDB PORT [READER]\n", argv[0]);
        return 2;
    }
    const char *db = argv[1];
    int port = atoi(argv[2]);
    const char *name = argc == 4 ? argv[3] : NULL;
    if (port <= 0 || port > 65535) {
        die("PORT must be a TCP port number");
    }
    trace = getenv("VIRT_CAC_TRACE") != NULL;

    char options[4096];
    if (snprintf(options, sizeof options, "db=\"sql:%s\" use_hw=removable", db)
        >= (int)sizeof options) {
        die("NSSDB path too long");
    }
    VCardEmulOptions *opts = vcard_emul_options(options);
    if (opts == NULL) {
        die("libcacard rejected the options");
    }
    if (vcard_emul_init(opts) != VCARD_EMUL_OK) {
        die("vcard_emul_init failed (does the NSS database exist?)");
    }

    VReader *reader = find_reader(name);
    unsigned char atr[64];
    int atr_len = sizeof atr;
    if (vreader_power_on(reader, atr, &atr_len) != VREADER_OK) {
        die("cannot power on the card");
    }
    printf("reader: %s\n", vreader_get_name(reader));
    hex_line(stdout, "atr: ", atr, atr_len);

    int fd = connect_vpcd(port);
    printf("connected\n");
    fflush(stdout);

    static unsigned char in[BUF_SIZE], out[BUF_SIZE];
    for (;;) {
        unsigned char head[2];
        if (!read_all(fd, head, 2)) {
            break;
        }
        size_t len = ((size_t)head[0] << 8) | head[1];
        if (len == 0) {
            continue;
        }
        if (!read_all(fd, in, len)) {
            break;
        }
        if (len == 1) {
            switch (in[0]) {
            case 0: /* power off */
                vreader_power_off(reader);
                break;
            case 1: /* power on */
            case 2: /* reset */
                atr_len = sizeof atr;
                vreader_power_on(reader, atr, &atr_len);
                break;
            case 4: /* get ATR */
                send_frame(fd, atr, atr_len);
                break;
            default:
                fprintf(stderr, "virt_cac: unknown control byte %d from vpcd\n", in[0]);
            }
            if (trace) {
                fprintf(stderr, "ctrl %d\n", in[0]);
            }
            continue;
        }
        if (trace) {
            hex_line(stderr, "> ", in, (int)len);
        }
        int out_len = sizeof out;
        if (vreader_xfr_bytes(reader, in, (int)len, out, &out_len) != VREADER_OK) {
            /* libcacard has no card in the reader any more: "no precise diagnosis". */
            out[0] = 0x6F;
            out[1] = 0x00;
            out_len = 2;
        }
        if (trace) {
            hex_line(stderr, "< ", out, out_len);
        }
        send_frame(fd, out, out_len);
    }
    close(fd);
    vreader_power_off(reader);
    vreader_free(reader);
    return 0;
}
