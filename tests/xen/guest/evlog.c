/* evlog: prints every input event of the given /dev/input/event* devices as one line
 * "RXFB-EV <device> <KEY|ABS|REL|...> <code> <value>" on stdout (the guest's hvc0),
 * so that the host can read what the guest received from its PV keyboard.
 * Built static on the host (gcc -static) for the busybox initramfs of the test guest. */
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *type_name(int t) {
    switch (t) {
    case EV_KEY: return "KEY";
    case EV_ABS: return "ABS";
    case EV_REL: return "REL";
    case EV_MSC: return "MSC";
    default: return "TYPE";
    }
}

int main(int argc, char **argv) {
    struct pollfd fds[16];
    int n = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc && n < 16; i++) {
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) { perror(argv[i]); continue; }
        char name[128] = "?";
        ioctl(fd, EVIOCGNAME(sizeof name), name);
        printf("RXFB-EVDEV %s \"%s\"\n", argv[i], name);
        fds[n].fd = fd; fds[n].events = POLLIN; n++;
    }
    if (n == 0) return 1;
    for (;;) {
        if (poll(fds, n, -1) < 0) continue;
        for (int i = 0; i < n; i++) {
            if (!(fds[i].revents & POLLIN)) continue;
            struct input_event ev[64];
            ssize_t r = read(fds[i].fd, ev, sizeof ev);
            for (ssize_t k = 0; k < r / (ssize_t)sizeof ev[0]; k++) {
                if (ev[k].type == EV_SYN) continue;
                printf("RXFB-EV %d %s %d %d\n", i, type_name(ev[k].type), ev[k].code, ev[k].value);
            }
        }
    }
}
