#!/usr/bin/python3
"""A small live RTSP server for tests: a moving test pattern, H.264, on 127.0.0.1.

Runs under the system Python with Debian's GStreamer RTSP server bindings (python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good/-ugly); .ci/run installs them.

    /usr/bin/python3 tools/rtsp_server.py PORT [PATH]      # serves rtsp://127.0.0.1:PORT/PATH
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = ("( videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=25/1 "
            "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=25 "
            "! rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> int:
    port = sys.argv[1]
    path = "/" + (sys.argv[2] if len(sys.argv) > 2 else "live")
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr)
        return 1
    print(f"serving rtsp://127.0.0.1:{port}{path}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
