"""Sums a folded perf profile (inferno-collapse-perf output: `frame;frame;... count`) into cost
groups by the sample's leaf frame (self time), so that a flamegraph's story fits in a table;
then names the callers of the largest leaf groups that do no work of their own (copies,
kernel UDP), by the nearest frame of ours or of the WebRTC stack."""
import collections
import re
import sys

# Leaf frame -> group, first match wins.
GROUPS = [
    ("memory copies (memcpy/memmove)", r"memmove|memcpy"),
    ("kernel: UDP send/receive path", None),  # a kernel leaf under a UDP syscall: see below
    ("kernel: other", r"_\[k\]$"),
    ("SRTP (AES-GCM/CTR, GHASH, HMAC)", r"^ring|aes|gcm|ghash|hmac|sha1|srtp"),
    ("async sync primitives (tokio mpsc/Notify, futures Mutex, event-listener, queues)",
     r"tokio::sync|event_listener|concurrent_queue|futures_util::lock|async_lock|notify"),
    ("tokio runtime and timers", r"tokio::runtime|tokio::time|mio::|clock_gettime|vdso"),
    ("memory allocation", r"^(malloc|free|cfree|realloc|calloc|_int_malloc|_int_free)$|__rust_(de|re)?alloc|tcache|malloc_consolidate"),
    ("RTP/RTCP interceptors (NACK buffer, reports, TWCC)", r"rtc_interceptor|interceptor"),
    ("rtc/webrtc stack (driver, handlers, sender, DTLS/ICE)", r"^rtc|^webrtc|rtc::|webrtc::|rtc_"),
    ("vitrine (router, legs, rewriter, mux)", r"vitrine"),
    ("hash maps (SipHash lookups)", r"hashbrown|hash_one|sip::Hasher|BuildHasher"),
]
UDP = re.compile(r"udp_sendmsg|udp_recvmsg|__sys_sendto|__sys_recvfrom|sendmmsg|recvmmsg|ip_finish_output|__dev_queue_xmit|net_rx_action|__netif_receive")
OURS = re.compile(r"^vitrine|^rtc|^webrtc|rtc::|webrtc::|rtc_interceptor")


def bare(frame):
    """A frame without its generic arguments (`Box<dyn Future<...>>` names half the crates);
    `<Type as Trait<..>>::method` keeps `Type as Trait::method`."""
    if frame.startswith("<"):
        frame = frame[1:].replace(">::", "::", 1)
    out, depth = [], 0
    for ch in frame:
        if ch == "<":
            depth += 1
        elif ch == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out).strip()


def group_of(frames):
    leaf = frames[-1]
    for name, rx in GROUPS:
        if name.startswith("kernel: UDP"):
            if leaf.endswith("_[k]") and any(UDP.search(f) for f in frames):
                return name
            continue
        if re.search(rx, leaf, re.I):
            return name
    return "other"


def main(path):
    totals = collections.Counter()
    callers = collections.defaultdict(collections.Counter)
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not count.isdigit():
                continue
            count = int(count)
            total += count
            raw = stack.split(";")
            frames = [bare(f) for f in raw]
            # The leaf as written: `<Type as Trait<..>>::method` names its type first.
            group = group_of(frames[:-1] + [raw[-1][:160]])
            totals[group] += count
            caller = next((f for f in reversed(frames[:-1]) if OURS.search(f)), "?")
            callers[group][caller] += count
    print(f"samples: {total} (self time by leaf frame)")
    for name, n in totals.most_common():
        print(f"{100.0 * n / max(total, 1):5.1f} %  {name}")
    for name in ("memory copies (memcpy/memmove)", "kernel: UDP send/receive path"):
        if totals[name]:
            print(f"\n{name}, by nearest caller in vitrine or the WebRTC stack:")
            for caller, n in callers[name].most_common(5):
                print(f"{100.0 * n / max(total, 1):5.1f} %  {caller[:140]}")


if __name__ == "__main__":
    main(sys.argv[1])
