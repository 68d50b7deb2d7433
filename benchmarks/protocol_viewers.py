"""Viewers that speak Streamlit's own websocket protocol and draw nothing.

A chromium page on this 2-core machine spends 0.3-0.5 CPU-s drawing each update of the live
panel (measured by benchmarks/classroom.py --browsers), so ten of them cannot keep up here
whatever the server does. In a classroom every student's browser has its own machine; what
they share is the server. These viewers load the page and ask for the live panel's updates
exactly as the browser does (Streamlit's frontend: one `rerun_script` BackMsg on load, then
one per `auto_rerun` interval for the fragment, with `is_auto_rerun` set), read every
ForwardMsg, and note when each "Last update" line arrives. Like the frontend, a viewer keeps
one timer per fragment, restarts it only when its interval changes, and drops them all when
a full run of the page starts. Many of them fit in one asyncio loop, so the server's cost
and the gaps between updates can be measured for 30 viewers instead of extrapolated.

On a page with growing live charts (dashboard/growing_panel.py) no fragment reruns: a viewer
that receives the charts' component does what its script does, asking the read-only route
for the points after the version it holds every `every` s as the answer says; each answer
is an update.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

UPDATE_PREFIX = "Last update"


@dataclass
class Viewer:
    """What one viewer saw: when it connected and when each "Last update" line arrived
    (monotonic seconds), the bytes it received, and the error that ended it, if any."""
    connected: float = 0.0
    updates: list[float] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    received_bytes: int = 0
    error: str | None = None

    @property
    def load_s(self) -> float | None:
        return self.updates[0] - self.connected if self.updates else None


@dataclass
class Watched:
    """The viewers, and the server's CPU seconds over the window after every viewer loaded
    (or the load timeout passed), which lasted `window_s`."""
    viewers: list[Viewer]
    server_cpu_s: float
    window_s: float
    window_start: float

    def updates_in_window(self, viewer: Viewer) -> list[float]:
        return [t for t in viewer.updates if t >= self.window_start]


def _rerun(query: str, page: str, page_hash: str = "", fragment_id: str = "") -> bytes:
    message = BackMsg()
    state = message.rerun_script
    state.query_string = query
    state.page_name = "" if page_hash else page  # as the frontend: the hash once known
    state.page_script_hash = page_hash
    if fragment_id:
        state.fragment_id = fragment_id
        state.is_auto_rerun = True
    return message.SerializeToString()


def _growing_data(message: ForwardMsg) -> dict | None:
    """The growing charts' mount data, if `message` draws them."""
    if message.WhichOneof("type") != "delta" or \
            message.delta.new_element.WhichOneof("type") != "bidi_component":
        return None
    component = message.delta.new_element.bidi_component
    if "growing" not in component.component_name or not component.json:
        return None
    data = json.loads(component.json)
    return data.get("data", data)


async def _poll_growing(url: str, data: dict, until: list[float], seen: Viewer) -> None:
    """What growing_charts.js does: ask for the points after those it holds, every `every` s
    (from each request's start), until no run is active."""
    have, every = None, None
    while time.monotonic() < until[0]:
        started = time.monotonic()
        query = {"runs": ",".join(map(str, data["runs"])), "viewer": data["viewer"],
                 "options": json.dumps(data["options"]), "every": every or ""}
        if have:
            query["have"] = have
        address = f"{url}{data['route']}?{urllib.parse.urlencode(query)}"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(address, timeout=30).read())
        seen.received_bytes += len(body)
        answer = json.loads(body)
        charts, state = answer["charts"], answer["state"]
        if charts and (charts["base"] is None or charts["base"] == have):
            have = charts["serial"]
        seen.updates.append(time.monotonic())
        seen.lines.append(f"{UPDATE_PREFIX} (took {state['took']:.2f} s, "
                          f"{state['cpu']:.4f} CPU-s)")
        every = state["every"]
        if not every:
            return
        await asyncio.sleep(max(0.0, started + every - time.monotonic()))


def _update_line(message: ForwardMsg) -> str:
    if message.WhichOneof("type") != "delta":
        return ""
    element = message.delta.new_element
    if element.WhichOneof("type") == "markdown" and element.markdown.body.startswith(
            UPDATE_PREFIX):
        return element.markdown.body
    return ""


async def _watch(url: str, page: str, query: str, until: list[float], seen: Viewer) -> None:
    import websockets
    address = url.replace("http://", "ws://", 1) + "/_stcore/stream"
    seen.connected = time.monotonic()
    async with websockets.connect(address, subprotocols=["streamlit"], max_size=None,
                                  open_timeout=60) as socket:
        await socket.send(_rerun(query, page))
        timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment -> (interval, timer)
        page_hash = ""

        async def every(fragment_id: str, interval: float) -> None:
            while True:  # the frontend's setInterval: on time, whether or not the last ended
                await asyncio.sleep(interval)
                await socket.send(_rerun(query, page, page_hash, fragment_id))

        def stop(fragment_ids) -> None:
            for fragment_id in list(fragment_ids):
                timers.pop(fragment_id)[1].cancel()

        try:
            while time.monotonic() < until[0]:
                try:
                    data = await asyncio.wait_for(socket.recv(), until[0] - time.monotonic())
                except asyncio.TimeoutError:
                    break
                seen.received_bytes += len(data)
                message = ForwardMsg.FromString(data)
                kind = message.WhichOneof("type")
                if kind == "new_session":
                    if not message.metadata.run.fragment_ids:  # a full run: timers start anew
                        stop(timers)
                elif kind == "navigation":  # the page st.navigation ran (new_session names
                    page_hash = message.navigation.page_script_hash  # the main script)
                elif kind == "auto_rerun":
                    rerun = message.auto_rerun
                    if timers.get(rerun.fragment_id, (None,))[0] != rerun.interval:
                        stop(set(timers) & {rerun.fragment_id})
                        timers[rerun.fragment_id] = (rerun.interval, asyncio.create_task(
                            every(rerun.fragment_id, rerun.interval)))
                elif kind == "stop_auto_rerun":
                    stop(set(timers) & set(message.stop_auto_rerun.fragment_ids))
                elif kind == "delta" and message.delta.new_element.HasField("exception"):
                    raise RuntimeError(message.delta.new_element.exception.message)
                elif (data := _growing_data(message)) is not None and "growing" not in timers:
                    timers["growing"] = (0.0, asyncio.create_task(
                        _poll_growing(url, data, until, seen)))
                elif line := _update_line(message):
                    seen.updates.append(time.monotonic())
                    seen.lines.append(line)
        finally:
            stop(timers)


async def _watch_all(url: str, page: str, query: str, viewers: int, seconds: float,
                     server_cpu, load_timeout: float, arrive_over_s: float,
                     settle_s: float) -> Watched:
    from concurrent.futures import ThreadPoolExecutor
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max(viewers, 4)))
    until = [time.monotonic() + load_timeout + settle_s + seconds]  # moved once all loaded
    seen = [Viewer() for _ in range(viewers)]

    async def one(index: int, viewer: Viewer) -> None:
        await asyncio.sleep(arrive_over_s * index / viewers)
        try:
            await _watch(url, page, query, until, viewer)
        except Exception as error:  # a viewer that fails is counted, not fatal
            viewer.error = f"{type(error).__name__}: {error}"

    async def window() -> tuple[float, float, float]:
        deadline = time.monotonic() + load_timeout
        while time.monotonic() < deadline and not all(v.updates or v.error for v in seen):
            await asyncio.sleep(0.1)
        await asyncio.sleep(settle_s)
        start, cpu = time.monotonic(), server_cpu()
        until[0] = start + seconds
        await asyncio.sleep(seconds)
        return start, server_cpu() - cpu, time.monotonic() - start

    tasks = [asyncio.create_task(one(index, viewer)) for index, viewer in enumerate(seen)]
    start, cpu, wall = await window()
    await asyncio.gather(*tasks)
    return Watched(seen, cpu, wall, start)


def watch(url: str, page: str, query: str, viewers: int, seconds: float, server_cpu,
          arrive_over_s: float = 0.0, settle_s: float = 0.0, load_timeout: float = 150.0
          ) -> Watched:
    """`viewers` protocol-level viewers of `url`/`page`?`query`, arriving one after another
    over `arrive_over_s` seconds (0: all at once); `settle_s` after all of them show their
    first update, they watch for `seconds` more while `server_cpu()` is read at both ends."""
    return asyncio.run(_watch_all(url, page, query, viewers, seconds, server_cpu,
                                  load_timeout, arrive_over_s, settle_s))
