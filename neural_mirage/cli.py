"""The ``neural-mirage`` command.

Every expected failure (bad option, bad file, missing weights, ...) ends in one line on stderr,
``neural-mirage: error: ...``, and exit code 2; a cancel (Ctrl-C) exits with 130.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import __version__

EXIT_ERROR = 2
EXIT_CANCELLED = 130


class UsageError(Exception):
    """A mistake in the command line; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line instead of usage text plus a line."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def weighted_list(what: str) -> Callable[[str], dict[str, float]]:
    """An argparse type for ``name[:weight],...`` (layers or classes), parsed as the plug-ins do:
    ``"fc7,relu4_2:0.2"`` -> ``{"fc7": 1.0, "relu4_2": 0.2}``."""
    from .client.presets import parse_weighted

    def parse(text: str) -> dict[str, float]:
        try:
            return parse_weighted(text, what)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def byte_size(text: str) -> int:
    """An argparse type for memory sizes: ``6G``, ``500M``, ``1.5GB`` or plain bytes."""
    units = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    number = text.strip().upper().removesuffix("B")
    unit = number[-1:] if number[-1:] in units else ""
    try:
        value = float(number[: len(number) - len(unit)]) * units[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a memory size such as 6G or "
                                         "500M") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a memory size must be positive")
    return int(value)


def parse_floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers"
                                         ) from None


def add_render_options(parser: argparse.ArgumentParser) -> None:
    """The options that make :class:`RenderParams`, one per schema entry (``--see-weight`` for
    ``see_weight``); shared by ``render`` and ``submit``."""
    from .engine.params import schema

    g = parser.add_argument_group("render options")
    for name, entry in schema(wire=False).items():
        flag = "--" + name.replace("_", "-")
        unit = f" ({entry['unit']})" if "unit" in entry else ""
        kind, default, text = entry["kind"], entry["default"], entry["help"] + unit
        if kind == "bool":
            g.add_argument(flag, action="store_true", help=text)
        elif kind == "choice":
            g.add_argument(flag, choices=entry["choices"], default=default, help=text)
        else:
            parse, metavar = _OPTION_TYPES[kind]
            g.add_argument(flag, type=parse, default=default, metavar=metavar, help=text)
    g.add_argument("--style", action="append", default=[], metavar="IMAGE",
                   help="a style image (repeat for several); default: the input itself")
    g.add_argument("--init-image", metavar="IMAGE", help="the start image for --init image")
    g.add_argument("--see-mask", metavar="IMAGE",
                   help="steer (--see) only where this grey image is white: 'see a castle "
                        "here'; painted over the photo, at its shape")


_OPTION_TYPES: dict[str, tuple[Callable[[str], Any], str | None]] = {
    "int": (int, None), "float": (float, None),
    "layers": (weighted_list("layer"), "LAYER[:W],..."),
    "classes": (weighted_list("class"), "CLASS[:W],..."),
    "weights": (parse_floats, "W,..."),
}


def params_from_args(args: argparse.Namespace) -> Any:
    from .engine.params import RenderParams, schema

    params = RenderParams(**{name: getattr(args, name) for name in schema(wire=False)})
    if args.see_mask and not params.see:
        raise UsageError("--see-mask needs classes to steer towards (--see)")
    return params.validate()


def add_weights_options(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """The options that make a :class:`ModelSpec`; shared by every command that loads a model."""
    g = parser.add_argument_group("model")
    g.add_argument("--weights", choices=("torchvision", "caffe", "file", "random"),
                   default="torchvision",
                   help="torchvision (default), caffe (neural-style's file), file (your own "
                        "VGG16/19 file, e.g. Places365) or random (untrained, for smoke runs)")
    g.add_argument("--arch", choices=("vgg19", "vgg16"), default="vgg19",
                   help="network for torchvision, caffe and random (a file says its own)")
    g.add_argument("--weights-path", metavar="FILE", help="weights file (default: torch's cache)")
    g.add_argument("--labels", metavar="FILE",
                   help="class names for the file's fc8, one per line (Places365's "
                        "categories_places365.txt works as it is)")
    g.add_argument("--preprocessing", choices=("torchvision", "caffe"),
                   help="input scaling the weights were trained with (default: as the "
                        "weights choice implies; torchvision for a file)")
    g.add_argument("--no-verify-weights", action="store_true",
                   help="skip the sha256 check (for neural-style-pt's remapped caffe file)")
    if device:
        g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def model_spec(args: argparse.Namespace) -> Any:
    from .weights import ModelSpec

    return ModelSpec(weights=args.weights, arch=args.arch, path=args.weights_path,
                     labels=args.labels, preprocessing=args.preprocessing,
                     verify=not args.no_verify_weights)


def writable_output(name: str) -> Path:
    """The output path, checked before any work: a PNG or JPEG name in a folder that exists and
    can be written, so a typo does not cost a whole render."""
    import os

    output = Path(name)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise UsageError(f"{output}: the output must end in .png, .jpg or .jpeg")
    folder = output.parent
    if not folder.is_dir():
        raise UsageError(f"{output}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{output}: the folder {folder} cannot be written to")
    return output


def cmd_render(args: argparse.Namespace) -> int:
    """Render in this process, with no daemon."""
    import torch

    from .console import ProgressLine, print_seen
    from .convert import from_tensor, to_tensor
    from .engine import Progress, keep_freed_memory, pick_device, render
    from .engine.device import available_memory
    from .engine.estimate import check_memory
    from .engine.head import WINDOW
    from .engine.render import fit_size
    from .images import read_image, read_mask, write_image
    from .weights import load_model

    params = params_from_args(args)
    if args.save_every < 0:
        raise UsageError("--save-every must not be negative")
    output = writable_output(args.output)
    if args.init == "image" and not args.init_image:
        raise UsageError("--init image needs --init-image")
    source = read_image(args.input)
    see_mask = (torch.from_numpy(read_mask(args.see_mask, source.width, source.height))
                if args.see_mask else None)
    styles = [to_tensor(read_image(p)) for p in args.style]
    init_image = to_tensor(read_image(args.init_image)) if args.init_image else None
    device = pick_device(args.device)
    keep_freed_memory()
    height, width = source.height, source.width
    budget = args.max_memory or available_memory(device)
    check_memory(width, height, params, budget, f"this machine's {device}")
    model, info = load_model(model_spec(args), device)
    if not info.pretrained:
        print(f"Using {info.label}: the result shows the method, not a real mirage.",
              file=sys.stderr)
    final = fit_size(width, height, params.size)
    if (params.fc_spatial or see_mask is not None) and min(final) < WINDOW:
        print(f"Note: at {final[0]}x{final[1]} a side is under {WINDOW} px, so the spatial fc "
              "map is one window across it there.", file=sys.stderr)
    progress = ProgressLine()

    def on_progress(p: Progress) -> None:
        progress.update(p.iteration, p.total, p.scale, p.scales, p.width, p.height, p.loss,
                        p.eta, p.losses)
        if p.preview is not None:
            step = output.with_name(f"{output.stem}.{p.iteration:05d}{output.suffix}")
            write_image(step, from_tensor(p.preview, source), args.bits)

    try:
        result = render(model, to_tensor(source), params, styles=styles or None,
                        init_image=init_image, on_progress=on_progress, see_top=args.top,
                        memory_budget=budget, preview_every=args.save_every,
                        see_mask=see_mask)
    finally:
        progress.close()
    write_image(output, from_tensor(result.image, source), args.bits)
    print(f"Wrote {output} ({result.image.shape[2]}x{result.image.shape[1]}, "
          f"{result.iterations} iterations in {result.elapsed:.1f} s on {device}, "
          f"loss {result.loss:.4g}{', stopped early' if result.stopped_early else ''})")
    if args.top:
        print_seen("The net sees in the input", [vars(s) for s in result.seen_input],
                   info.pretrained)
        print_seen("The net sees in the result", [vars(s) for s in result.seen_result],
                   info.pretrained)
    return 0


def cmd_sees(args: argparse.Namespace) -> int:
    """What the net sees where: the top class of every 224 px window, printed and drawn."""
    from .convert import to_tensor
    from .engine import pick_device
    from .engine.head import where_seen
    from .engine.render import fit_size, resize
    from .images import read_image
    from .sees_map import class_shares, draw
    from .weights import load_model

    if args.size < 32:
        raise UsageError("--size must be at least 32")
    output = writable_output(args.map) if args.map else None
    source = read_image(args.photo)
    device = pick_device(args.device)
    model, info = load_model(model_spec(args), device)
    width, height = fit_size(source.width, source.height, min(args.size, max(source.width,
                                                                              source.height)))
    image = resize(to_tensor(source)[None], width, height)[0].to(device)
    seen = where_seen(model, image)
    rows, columns = seen.classes.shape
    note = "" if info.pretrained else "  [RANDOM weights: these classes mean nothing]"
    print(f"What the net sees where in {args.photo} ({columns}x{rows} windows of 224 px at "
          f"{width}x{height}, {info.label}):{note}")
    for share in class_shares(seen, model.labels)[:args.top]:
        print(f"  {100 * share.share:5.1f}% of the windows  {share.name} (up to "
              f"{100 * share.probability:.1f}%)")
    if output is not None:
        caption = f"what the net sees where: {info.label}"
        draw(source.rgb, seen, model.labels, caption).save(output)
        print(f"Wrote {output}")
    return 0


def cmd_classes(args: argparse.Namespace) -> int:
    """List the classes (optionally those containing SEARCH) and the steering groups."""
    from .engine.seeing import imagenet_classes
    from .engine.steering import available_groups
    from .weights import read_labels

    names = read_labels(args.labels) if args.labels else imagenet_classes()
    search = (args.search or "").lower()
    for index, name in enumerate(names):
        if search in name.lower():
            print(f"{index:4d}  {name}")
    for group, members in available_groups(names).items():
        if search in group or any(search in m.lower() for m in members):
            print(f"@{group}: {', '.join(members)}")
    return 0


def cmd_fetch_weights(args: argparse.Namespace) -> int:
    from .weights import fetch_weights

    path = fetch_weights(args.which, Path(args.dest) if args.dest else None, args.arch)
    print(f"{args.which} {args.arch} weights verified at {path}")
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    """Run the render daemon in the foreground."""
    from .client.locate import log_file
    from .daemon.config import (
        DaemonConfig,
        configure_logging,
        take_lock,
        write_connection_file,
    )
    from .install.plugins import sandboxed_client_dirs

    config = DaemonConfig(max_queue=args.max_queue, max_pixels=args.max_pixels,
                          idle_exit=args.idle_exit,
                          max_memory=args.max_memory,
                          curve_dir=Path(args.curve_dir) if args.curve_dir else None,
                          sandbox_dirs=sandboxed_client_dirs())
    if args.bind:
        config.endpoint = args.bind
    # Before torch is imported (seconds): a client started now waits for this daemon.
    lock = take_lock(config)
    write_connection_file(config, starting=True)
    configure_logging(Path(args.log_file) if args.log_file else log_file(), args.verbose)
    from .daemon.server import run_daemon

    run_daemon(config, model_spec(args), args.devices.split(","), lock)
    return 0


def _client(args: argparse.Namespace, spawn: bool = False) -> Any:
    from .client.locate import daemon_command
    from .client.zmq_client import Client

    command = None
    if spawn:  # the daemon it starts serves the model the options name
        command = daemon_command("--weights", args.weights, "--arch", args.arch)
        for flag, value in (("--weights-path", args.weights_path), ("--labels", args.labels),
                            ("--preprocessing", args.preprocessing), ("--bind", args.endpoint)):
            if value:
                command += [flag, value]
        if args.no_verify_weights:
            command.append("--no-verify-weights")
    return Client.connect(args.endpoint, timeout=args.timeout, spawn=spawn,
                          spawn_command=command,
                          on_spawn=lambda: print("Starting the daemon...", file=sys.stderr))


def cmd_submit(args: argparse.Namespace) -> int:
    """Render through the daemon."""
    import numpy as np

    from .console import ProgressLine, print_seen
    from .daemon import pixels
    from .images import read_image, read_mask

    params = params_from_args(args)
    output = writable_output(args.output)
    if args.style or args.init_image:
        raise UsageError("--style and --init-image work with 'render' only (the daemon takes one "
                         "image per job)")
    source = read_image(args.input)
    like = {"channels": 4 if source.alpha is not None else 3,
            "order": "RGBA" if source.alpha is not None else "RGB",
            "dtype": "u16" if source.bits == 16 else "u8"}
    meta, raw = pixels.encode(source.rgb, source.alpha, like)
    see_mask = None
    if args.see_mask:
        plane = read_mask(args.see_mask, source.width, source.height)
        see_mask = (plane * 255 + 0.5).astype(np.uint8).tobytes()
    with _client(args, spawn=args.spawn) as client:
        accepted = client.submit(raw, meta, params.to_dict(), detach=args.detach,
                                 see_mask=see_mask)
        job = accepted["job"]
        if args.detach:
            print(job)
            return 0
        print(f"Job {job} queued at position {accepted['position']}", file=sys.stderr)
        progress = ProgressLine()
        try:
            result = client.wait(job, on_progress=lambda p, _: progress.update(
                p["iteration"], p["total"], p["scale"], p["scales"], p["width"], p["height"],
                p["loss"], p["eta"], p["losses"]))
        except KeyboardInterrupt:
            client.cancel(job)
            raise
        finally:
            progress.close()
        _save_result(result, output, args.bits or source.bits)
        client.ack(job)
    header = result.header
    print(f"Wrote {output} ({result.image['width']}x{result.image['height']}, "
          f"{header['iterations']} iterations in "
          f"{header['elapsed']:.1f} s, {header['model']})")
    print_seen("The net sees in the input", header["seen_input"], header["pretrained"])
    print_seen("The net sees in the result", header["seen_result"], header["pretrained"])
    return 0


def _save_result(result: Any, output: Path, bits: int) -> None:
    """Write a daemon RESULT to an image file (before the caller ACKs it)."""
    from .daemon import pixels
    from .images import Picture, write_image

    rgb, alpha = pixels.decode(result.image, result.pixels)
    write_image(output, Picture(rgb, alpha, bits), bits)


def cmd_status(args: argparse.Namespace) -> int:
    import json

    with _client(args) as client:
        status = client.status()
    status.pop("rid", None)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"neural-mirage daemon {status['version']} on {', '.join(status['devices'])}, "
          f"{status['model']['label']}, up {status['uptime']:.0f} s, "
          f"{status['memory']['rss'] / 2**20:.0f} MB resident")
    for job in status["running"]:
        print(f"  running {job['job']} {job['width']}x{job['height']} "
              f"{job['iteration']}/{job['total']} on {job['device']}")
    for position, job in enumerate(status["queue"], start=1):
        print(f"  queued  {job['job']} {job['width']}x{job['height']} (position {position})")
    print(f"  {status['stored']['results']} finished result(s) waiting to be fetched")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        reply = client.cancel(args.job)
    print(f"Job {args.job}: {reply.get('state', 'cancelled')}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        result = client.fetch(args.job)
        _save_result(result, Path(args.output), 16 if result.image["dtype"] != "u8" else 8)
        client.ack(args.job)
    print(f"Wrote {args.output}")
    return 0


def cmd_service(args: argparse.Namespace) -> int:
    from .install import service

    if args.action == "install":
        daemon_args = [*model_spec(args).daemon_args(), "--devices", args.devices]
        if args.bind:
            daemon_args += ["--bind", args.bind]
        print(service.install(daemon_args))
        return 0
    print(service.control(args.action))
    return 0


def cmd_install_plugin(args: argparse.Namespace) -> int:
    from .install import plugins

    daemon_args = [*model_spec(args).daemon_args(), "--idle-exit", f"{args.idle_exit:g}"]
    if args.zip:
        if args.editor != "krita" or args.dest or args.target:
            raise UsageError("--zip makes Krita's plug-in zip: 'install-plugin krita --zip FILE'")
        path = plugins.krita_zip(Path(args.zip), daemon_args)
        print(f"Wrote {path}. In Krita: Tools > Scripts > Import Python Plugin from File..., "
              "choose it, answer Yes to enable it, restart Krita; the menu entry is Tools > "
              "Scripts > Neural Mirage...")
        return 0
    try:
        installs = plugins.install(args.editor, args.target,
                                   Path(args.dest) if args.dest else None, daemon_args)
    except plugins.PluginInstallError as exc:
        raise UsageError(str(exc)) from exc
    if not installs:
        raise UsageError("found neither Krita nor GIMP 3 (native or Flatpak); name one, e.g. "
                         "'install-plugin krita', to install it in its usual folder")
    menus = {"krita": "Tools > Scripts > Neural Mirage...",
             "gimp": "Filters > Artistic > Neural Mirage..."}
    for done in installs:
        name = plugins.NAMES[done.editor]
        how = f"Restart {name}; the menu entry is {menus[done.editor]}"
        if done.editor == "krita" and done.kritarc is None:
            how = ("Enable it in Settings > Configure Krita > Python Plugin Manager and restart "
                   f"Krita; the menu entry is {menus['krita']}")
        if done.target in plugins.SANDBOXES:
            how = ("From its sandbox it cannot start the daemon: start that with 'neural-mirage "
                   f"service enable'. {how}")
        note = f" ({done.note})" if done.note else ""
        print(f"Installed the {name} plug-in ({done.target}) in {done.package}{note}. {how}")
    missing = set(plugins.EDITORS) - {i.editor for i in installs}
    for editor in sorted(missing) if args.editor == "all" else []:
        print(f"{plugins.NAMES[editor]} was not found (native or Flatpak); skipped.")
    return 0


def cmd_uninstall_plugin(args: argparse.Namespace) -> int:
    from .install import plugins

    removed = plugins.uninstall(args.editor, args.target)
    for done in removed:
        print(f"Removed the {plugins.NAMES[done.editor]} plug-in ({done.target}) from "
              f"{done.package}.")
    if not removed:
        which = "" if args.editor == "all" else f" for {plugins.NAMES[args.editor]}"
        where = f" ({args.target})" if args.target else ""
        print(f"No neural-mirage plug-in is installed{which}{where}: nothing is recorded in "
              f"{plugins.manifest_file()}.")
    return 0


def add_client_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("daemon connection")
    g.add_argument("--endpoint", help="daemon endpoint (default: from the connection file)")
    g.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the daemon before giving up")


def build_parser() -> argparse.ArgumentParser:
    from .client.presets import SEES_SIZE

    parser = _Parser(prog="neural-mirage", description=(
        "Neural mirage: style transfer whose content is what VGG19's fully connected layers "
        "see in a photo."))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = commands.add_parser("render", help="render an image in this process (no daemon)")
    p.add_argument("input", help="the photo (JPEG, PNG, TIFF, ...)")
    p.add_argument("output", help="the result (.png or .jpg)")
    add_render_options(p)
    add_weights_options(p)
    g = p.add_argument_group("output")
    g.add_argument("--bits", type=int, choices=(8, 16), help="PNG bit depth (default: as input)")
    g.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also write OUTPUT-name.NNNNN.png every N iterations")
    g.add_argument("--top", type=int, default=5, help="classes to report (0: none)")
    g.add_argument("--max-memory", type=byte_size, metavar="SIZE",
                   help="refuse a render estimated to need more, e.g. 6G (default: the "
                        "device's free memory)")
    p.set_defaults(func=cmd_render)

    p = commands.add_parser("daemon", help="run the render daemon in the foreground")
    p.add_argument("--bind", metavar="ENDPOINT",
                   help="e.g. tcp://127.0.0.1:5599 (default: ipc:// in the runtime dir)")
    add_weights_options(p)
    p.add_argument("--devices", default="auto",
                   help="one worker per device, e.g. cuda:0,cuda:1 (default: auto)")
    p.add_argument("--max-queue", type=int, default=32, help="queued jobs before BUSY")
    p.add_argument("--idle-exit", type=float, default=0, metavar="SECONDS",
                   help="exit after this long with no job and no client message (default 0: "
                        "never; the daemon a plug-in starts uses 900)")
    p.add_argument("--max-pixels", type=int, default=8192 * 8192, help="largest input image")
    p.add_argument("--max-memory", type=byte_size, metavar="SIZE",
                   help="refuse renders estimated to need more, e.g. 6G (default: the "
                        "device's free memory when the daemon starts)")
    p.add_argument("--curve-dir", metavar="DIR",
                   help="CURVE keys (server.key_secret, clients/): needed for non-loopback "
                        "binds; each client then sees only its own jobs")
    p.add_argument("--log-file", metavar="FILE",
                   help="default: ~/.cache/neural-mirage/daemon.log")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_daemon)

    p = commands.add_parser("service", help="run the daemon at every login, for this user "
                            "(systemd on Linux, launchd on macOS, the Run key on Windows)")
    p.add_argument("action", choices=("install", "uninstall", "enable", "disable", "start",
                                      "stop", "status"),
                   help="install writes the service with the options below, starting nothing; "
                        "enable starts it now and at every login; disable undoes that; "
                        "uninstall removes what install wrote")
    add_weights_options(p, device=False)
    p.add_argument("--devices", default="auto")
    p.add_argument("--bind", metavar="ENDPOINT")
    p.set_defaults(func=cmd_service)

    p = commands.add_parser("submit", help="render through the daemon")
    p.add_argument("input")
    p.add_argument("output")
    add_render_options(p)
    add_client_options(p)
    p.add_argument("--detach", action="store_true",
                   help="print the job id and return; fetch the result later")
    p.add_argument("--spawn", action="store_true",
                   help="start a daemon if none is running, serving the model options below")
    add_weights_options(p, device=False)
    p.add_argument("--bits", type=int, choices=(8, 16), help="PNG bit depth (default: as input)")
    p.set_defaults(func=cmd_submit)

    p = commands.add_parser("status", help="show the daemon's queue, jobs and memory")
    add_client_options(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = commands.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job")
    add_client_options(p)
    p.set_defaults(func=cmd_cancel)

    p = commands.add_parser("fetch", help="write a finished job's result to a file")
    p.add_argument("job")
    p.add_argument("output")
    add_client_options(p)
    p.set_defaults(func=cmd_fetch)

    p = commands.add_parser("install-plugin", help="install the Krita or GIMP plug-in where "
                            "each editor is (native, Flatpak)")
    p.add_argument("editor", choices=("krita", "gimp", "all"))
    p.add_argument("--target", choices=("native", "flatpak", "snap"),
                   help="only this packaging of the editor (default: each one found)")
    p.add_argument("--dest", metavar="DIR", help="Krita resource folder or GIMP plug-ins folder "
                   "(default: the editor's own, for this user)")
    p.add_argument("--zip", metavar="OUT.zip", help="instead, write a zip for Krita's Tools > "
                   "Scripts > Import Python Plugin from File...")
    add_weights_options(p, device=False)  # for a daemon that the plug-in starts
    p.add_argument("--idle-exit", type=float, default=900, metavar="SECONDS",
                   help="a daemon the plug-in starts exits after this long with no job "
                        "(default 900: 15 minutes; 0: never)")
    p.set_defaults(func=cmd_install_plugin)

    p = commands.add_parser("uninstall-plugin", help="remove what install-plugin installed")
    p.add_argument("editor", choices=("krita", "gimp", "all"))
    p.add_argument("--target", choices=("native", "flatpak", "snap", "folder"),
                   help="only the plug-ins installed there (default: all)")
    p.set_defaults(func=cmd_uninstall_plugin)

    p = commands.add_parser("sees", help="what the net sees where in a photo: a class map")
    p.add_argument("photo", help="a photo, or a result")
    p.add_argument("--map", metavar="OUT.png",
                   help="draw each window's top class over a faded copy of the photo")
    p.add_argument("--size", type=int, default=SEES_SIZE,
                   help=f"longest side the photo is analysed at (default {SEES_SIZE}; a "
                        "smaller photo at its own)")
    p.add_argument("--top", type=int, default=10, help="classes to list")
    add_weights_options(p)
    p.set_defaults(func=cmd_sees)

    p = commands.add_parser("classes", help="list the classes and groups for --see")
    p.add_argument("search", nargs="?", help="only names containing this")
    p.add_argument("--labels", metavar="FILE", help="a model's label file (default: ImageNet)")
    p.set_defaults(func=cmd_classes)

    p = commands.add_parser("fetch-weights", help="download and verify VGG weights")
    p.add_argument("which", nargs="?", choices=("torchvision", "caffe"), default="torchvision")
    p.add_argument("--arch", choices=("vgg19", "vgg16"), default="vgg19")
    p.add_argument("--dest", metavar="FILE", help="where to put the file (default: torch's cache)")
    p.set_defaults(func=cmd_fetch_weights)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .client.protocol import ProtocolError
    from .client.zmq_client import DaemonError, JobCancelled
    from .daemon.config import DaemonStartError
    from .engine import ParamError, RenderCancelled, RenderDiverged
    from .images import ImageError
    from .install.service import ServiceError
    from .weights import WeightsError

    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except JobCancelled as exc:
        print(f"neural-mirage: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except (UsageError, ParamError, ImageError, WeightsError, RenderDiverged, DaemonError,
            DaemonStartError, ProtocolError, ServiceError, argparse.ArgumentTypeError) as exc:
        print(f"neural-mirage: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:  # device names and the like, from torch-free checks
        print(f"neural-mirage: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, RenderCancelled):
        print("neural-mirage: cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except MemoryError:
        print("neural-mirage: error: out of memory: try a smaller --size", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
