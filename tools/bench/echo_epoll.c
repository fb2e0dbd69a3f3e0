/* A minimal hand-written echo server on level-triggered epoll: the ceiling
 * for echo_compare.sh.
 *
 *   echo_epoll [port]     # port 0 (default): any free port
 *
 * Listens on 127.0.0.1, prints the port as stdout's first line, serves until
 * killed. Per readable socket: one recv() into a 256 KiB buffer, one send()
 * of what came; whatever the kernel did not take is kept, reading stops and
 * EPOLLOUT is watched until it is flushed. TCP_NODELAY, as asyncio. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kBufSize = 256 * 1024, kMaxEvents = 256 };

struct conn {
  int fd;
  size_t pending_off; /* unsent bytes: buf[pending_off, pending_end) */
  size_t pending_end;
  char* pending; /* allocated while there are unsent bytes */
};

static char buf[kBufSize];

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void close_conn(int ep, struct conn* c) {
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  free(c->pending);
  free(c);
}

static void set_events(int ep, struct conn* c, unsigned events) {
  struct epoll_event ev;
  ev.events = events;
  ev.data.ptr = c;
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Sends from `data`; returns 0 if all sent, 1 if some is pending, -1 on error. */
static int send_some(int ep, struct conn* c, const char* data, size_t len) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(c->fd, data + off, len - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return -1;
    }
    off += (size_t)n;
  }
  if (off == len) return 0;
  if (c->pending == NULL) c->pending = malloc(kBufSize);
  if (c->pending == NULL) die("malloc");
  memmove(c->pending, data + off, len - off);
  c->pending_off = 0;
  c->pending_end = len - off;
  set_events(ep, c, EPOLLOUT);
  return 1;
}

int main(int argc, char** argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (ls < 0) die("socket");
  int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr*)&addr, sizeof addr) < 0) die("bind");
  if (listen(ls, 1024) < 0) die("listen");
  socklen_t alen = sizeof addr;
  if (getsockname(ls, (struct sockaddr*)&addr, &alen) < 0) die("getsockname");
  printf("%u\n", (unsigned)ntohs(addr.sin_port));
  fflush(stdout);

  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1");
  struct epoll_event ev;
  ev.events = EPOLLIN;
  ev.data.ptr = NULL; /* NULL: the listening socket */
  if (epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) < 0) die("epoll_ctl");

  struct epoll_event events[kMaxEvents];
  for (;;) {
    int n = epoll_wait(ep, events, kMaxEvents, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
      struct conn* c = events[i].data.ptr;
      if (c == NULL) {
        int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) continue;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = calloc(1, sizeof *c);
        if (c == NULL) die("calloc");
        c->fd = fd;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
        continue;
      }
      if (c->pending_end > c->pending_off) { /* EPOLLOUT: flush */
        int r = send_some(ep, c, c->pending + c->pending_off, c->pending_end - c->pending_off);
        if (r < 0) {
          close_conn(ep, c);
        } else if (r == 0) {
          c->pending_off = c->pending_end = 0;
          set_events(ep, c, EPOLLIN);
        }
        continue;
      }
      ssize_t got = recv(c->fd, buf, sizeof buf, 0);
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (got <= 0) {
        close_conn(ep, c);
        continue;
      }
      if (send_some(ep, c, buf, (size_t)got) < 0) close_conn(ep, c);
    }
  }
}
