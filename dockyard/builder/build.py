"""Run a parsed Dockerfile: stages, instructions, and docker's classic build output.

Each step makes an image: metadata instructions (ENV, CMD, LABEL...) a new config with an
empty layer; RUN a container from the current image (its output streamed, stderr in red as
docker shows it), whose changes are committed as a layer; COPY/ADD a layer written straight
from the context (or another stage's root). Intermediate images are untagged; the final one
gets the ``-t`` names. The JSON stream is docker's: "Step N/M : ...", " ---> Running in
<id>", " ---> <id>", "Successfully built <id>", "Successfully tagged <name>", an aux ID."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import re
import stat
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dockyard import reference
from dockyard.archive.layers import WHITEOUT_PREFIX
from dockyard.builder.cache import BuildCache, StepKey
from dockyard.builder.cache_from import CacheSources, layer_writer
from dockyard.builder.context import SourceTree
from dockyard.builder.parser import Dockerfile, Instruction, parse
from dockyard.builder.shell_words import expand, expand_heredoc, expand_words
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.images.model import format_platform, parse_platform, platform_matches, platform_of

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
DEFAULT_SHELL = ["/bin/sh", "-c"]
_HEREDOC_ONLY = re.compile(r"<<-?([\"']?)[A-Za-z_][A-Za-z0-9_]*\1")
# ARGs every build knows without an ARG line (docker's predefined proxy args)
PREDEFINED_ARGS = frozenset({"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
                             "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"})
_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Cmd", "Healthcheck", "Volumes", "WorkingDir", "Entrypoint",
                "OnBuild", "Labels", "StopSignal", "Shell")


class BuildError(DockyardError):
    """A build step failed; ``code`` is the RUN's exit code when that is why."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class BuildOptions:
    dockerfile: str = "Dockerfile"
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str | None] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    pull: bool = False
    network: str = ""
    quiet: bool = False
    remove: bool = True  # docker's rm: intermediate containers of successful steps
    force_remove: bool = False  # also those of failed steps
    explain_cache: bool = False  # dockyard's: say why each step missed the cache
    cache_from: list[str] = field(default_factory=list)  # images whose history is a cache too
    platform: str = ""  # of the base images (FROM --platform overrides it); "": this host's


@dataclass(frozen=True)
class _Step:
    """What a step's image records: its history entry's ``created_by``, whether it has a
    layer, its config section and author (how a --cache-from image is matched and reused)."""

    created_by: str
    empty_layer: bool
    config: dict[str, Any]
    author: str = ""


@dataclass
class _Stage:
    name: str
    index: int
    image: Any | None  # the current Image (None: scratch, nothing yet)
    config: dict[str, Any]
    args: dict[str, str] = field(default_factory=dict)  # the ARGs declared in this stage, with values
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))


class Build:
    def __init__(self, engine: Any, context_dir: str, options: BuildOptions, emit: Emit,
                 cancelled: Callable[[], bool] = lambda: False, in_place: bool = False) -> None:
        self.engine, self.images, self.containers = engine, engine.images, engine.containers
        self.context, self.opts = context_dir, options
        self._emit = emit
        self.cancelled = cancelled  # the client went away (Ctrl-C): stop, leaving nothing
        # where a step's temporary files and mounts go (never beside a context read in place)
        self.scratch = os.path.join(engine.config.exec_root, "build")
        os.makedirs(self.scratch, mode=0o700, exist_ok=True)
        self.used_args: set[str] = set()
        self.stages: list[_Stage] = []
        self.cache: BuildCache = engine.build_cache
        # the context less .dockerignore; read in place, its file digests are remembered
        self.source = SourceTree(context_dir, ignore=True, digests=self.cache if in_place else None)
        self.sources = CacheSources(self._cache_sources(options.cache_from))
        self.step = ""  # "Step N/M", for explanations
        self.first_miss = ""  # the first step of this build that missed the cache

    def _cache_sources(self, names: list[str]) -> list[Any]:
        """The --cache-from images there are; a missing one is skipped (docker logs it)."""
        found = []
        for name in names:
            try:
                found.append(self.images.resolve(name))
            except (NotFound, InvalidArgument):
                log.warning("build: --cache-from %s: no such image, skipped", name)
        return found

    # ------------------------------------------------------------------ output

    def say(self, text: str) -> None:
        if not self.opts.quiet:
            self._emit({"stream": text})

    # ------------------------------------------------------------------ the build

    def run(self) -> str:
        for tag in self.opts.tags:
            reference.parse(tag)  # a bad name fails before any work
        doc = self._dockerfile()
        instructions = doc.instructions
        first_from = next((i for i, inst in enumerate(instructions) if inst.cmd == "from"), None)
        if first_from is None:
            raise BuildError("no build stage in current context" if instructions else "the Dockerfile (Dockerfile) cannot be empty")
        global_args: dict[str, str] = {}
        for inst in instructions[:first_from]:
            if inst.cmd != "arg":
                raise BuildError(f"Dockerfile:{inst.line}: {inst.cmd.upper()} is not allowed before FROM (only ARG is)")
            self._declare_args(inst, global_args, global_args)
        steps = instructions[first_from:]
        if self.opts.target:
            names = [expand(i.args[2], global_args).lower() for i in steps if i.cmd == "from" and len(i.args) == 3]
            if self.opts.target.lower() not in names:
                raise BuildError(f"failed to reach build target {self.opts.target} in Dockerfile")
        stage: _Stage | None = None
        total = len(instructions)
        for number, inst in enumerate(instructions, 1):
            if self.cancelled():
                raise BuildError("the build was cancelled")
            if inst.cmd == "from" and stage is not None and self.opts.target and stage.name == self.opts.target.lower():
                break
            self.step = f"Step {number}/{total}"
            self.say(f"{self.step} : {inst.original}\n")
            if inst.cmd == "arg" and number <= first_from:
                continue
            if inst.cmd == "from":
                stage = self._from(inst, global_args)
                self.stages.append(stage)
            else:
                assert stage is not None
                self._step(stage, inst)
            if stage is not None and stage.image is not None:
                self.say(f" ---> {_short(stage.image.id)}\n")
        assert stage is not None
        if stage.image is None or self.opts.labels:
            self._commit_metadata(stage, "LABEL " + " ".join(f"{k}={v}" for k, v in self.opts.labels.items()),
                                  labels=self.opts.labels)
        unused = sorted(k for k in self.opts.build_args if k not in self.used_args and k not in PREDEFINED_ARGS)
        if unused:
            self.say(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed\n")
        image_id = stage.image.id
        self._emit({"aux": {"ID": image_id}})
        self.say(f"Successfully built {_short(image_id)}\n")
        for tag in self.opts.tags:
            ref = reference.parse(tag)
            self.images.tag(image_id, ref.name, ref.tag)
            self.say(f"Successfully tagged {ref.familiar()}\n")
        return image_id

    def _dockerfile(self) -> Dockerfile:
        root = os.path.realpath(self.context)
        path = os.path.realpath(os.path.join(root, self.opts.dockerfile.lstrip("/")))
        if not path.startswith(root + "/"):  # a symlink out of the context is not followed
            raise BuildError(f"the Dockerfile ({self.opts.dockerfile}) must be within the build context")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            raise BuildError(f"Cannot locate specified Dockerfile: {self.opts.dockerfile}") from None
        except (UnicodeDecodeError, IsADirectoryError) as e:
            raise BuildError(f"cannot read the Dockerfile {self.opts.dockerfile}: {e}") from None
        return parse(text, os.path.basename(self.opts.dockerfile))

    # ------------------------------------------------------------------ ARG and expansion

    def _declare_args(self, inst: Instruction, scope: dict[str, str], env: dict[str, str]) -> None:
        for word in inst.args:
            name, eq, default = word.partition("=")
            if not name:
                raise BuildError(f"Dockerfile:{inst.line}: ARG names can not be blank")
            if name in self.opts.build_args and self.opts.build_args[name] is not None:
                value = self.opts.build_args[name] or ""
                self.used_args.add(name)
            elif eq:
                value = expand(default, env)
            else:
                value = None  # declared without a value: unset unless given
                if name in self.opts.build_args:
                    self.used_args.add(name)
            if value is not None:
                scope[name] = value
            else:
                scope.pop(name, None)

    def _env(self, stage: _Stage) -> dict[str, str]:
        """What ``$NAME`` means in a stage: its ARGs, overridden by its ENV (docker's order)."""
        env = dict(stage.args)
        for item in stage.config.get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        return env

    # ------------------------------------------------------------------ FROM

    def _from(self, inst: Instruction, global_args: dict[str, str]) -> _Stage:
        name_word = expand(inst.args[0], global_args)
        stage_name = inst.args[2].lower() if len(inst.args) == 3 else ""
        for earlier in self.stages:
            if earlier.name and earlier.name == name_word.lower():  # FROM an earlier stage
                return _Stage(stage_name, len(self.stages), earlier.image, dict(earlier.config),
                              shell=list(earlier.shell))
        if name_word == "scratch":
            return _Stage(stage_name, len(self.stages), None, {"Env": None})
        spec = expand(inst.flags["platform"][-1], global_args) if "platform" in inst.flags else self.opts.platform
        image = self._base_image(name_word, inst, self._platform(spec, inst))
        config = {k: v for k, v in (image.config.doc.get("config") or {}).items()}
        stage = _Stage(stage_name, len(self.stages), image, config,
                       shell=list(config.get("Shell") or DEFAULT_SHELL))
        for trigger in config.get("OnBuild") or []:  # the base image's ONBUILD triggers
            self.say("# Executing 1 build trigger\n")
            self._step(stage, parse(trigger).instructions[0])
        if config.get("OnBuild"):
            stage.config["OnBuild"] = None
        return stage

    @staticmethod
    def _platform(spec: str, inst: Instruction) -> dict[str, str] | None:
        try:
            return parse_platform(spec) if spec else None
        except InvalidArgument as e:
            raise BuildError(f"Dockerfile:{inst.line}: {e}") from None

    def _base_image(self, name: str, inst: Instruction, platform: dict[str, str] | None) -> Any:
        """The local image unless --pull, or it is not for ``platform``: then pulled."""
        try:
            ref = reference.parse(name)
        except DockyardError as e:
            raise BuildError(f"Dockerfile:{inst.line}: {e}") from None
        local = None
        with contextlib.suppress(NotFound):
            local = self.images.resolve(str(ref))
        if local is not None and not self.opts.pull and (platform is None or
                                                          platform_matches(platform, platform_of(local.config))):
            return local
        from dockyard.distribution.pull import pull, resolve

        def mismatch(image: Any) -> BuildError:  # docker's words
            assert platform is not None
            return BuildError(f"image with reference {name} was found but does not match the specified platform: "
                              f"wanted {format_platform(platform)}, actual: {format_platform(platform_of(image.config))}")

        try:
            plan = resolve(str(ref), platform, hosts=self.engine.registries)
        except DockyardError:
            if local is None or platform is None or self.opts.pull:
                raise
            raise mismatch(local) from None  # no registry has it for this platform either
        image = self.images.resolve(pull(self.images, plan, self._pull_progress))
        if platform is not None and not platform_matches(platform, platform_of(image.config)):
            raise mismatch(image)  # a single-platform manifest of another platform
        return image

    def _pull_progress(self, msg: dict[str, Any]) -> None:
        if not self.opts.quiet and "progressDetail" not in msg:
            line = f"{msg.get('id')}: {msg['status']}" if msg.get("id") else msg.get("status", "")
            self._emit({"stream": line + "\n"})

    # ------------------------------------------------------------------ the other instructions

    def _step(self, stage: _Stage, inst: Instruction) -> None:
        handler = getattr(self, f"_i_{inst.cmd}", None)
        if handler is None:
            raise BuildError(f"Dockerfile:{inst.line}: {inst.cmd.upper()} is not supported yet")
        handler(stage, inst)

    def _i_arg(self, stage: _Stage, inst: Instruction) -> None:
        self._declare_args(inst, stage.args, self._env(stage))
        self._commit_metadata(stage, f"ARG {' '.join(inst.args)}")

    def _i_env(self, stage: _Stage, inst: Instruction) -> None:
        env = self._env(stage)
        current = list(stage.config.get("Env") or [])
        for word in inst.args:
            key, _, value = word.partition("=")
            key, value = expand(key, env), expand(value, env)
            current = [e for e in current if e.partition("=")[0] != key] + [f"{key}={value}"]
        stage.config["Env"] = current
        self._commit_metadata(stage, f"ENV {' '.join(inst.args)}")

    def _i_label(self, stage: _Stage, inst: Instruction) -> None:
        env = self._env(stage)
        labels = dict(stage.config.get("Labels") or {})
        for word in inst.args:
            key, _, value = word.partition("=")
            labels[expand(key, env)] = expand(value, env)
        stage.config["Labels"] = labels
        self._commit_metadata(stage, f"LABEL {' '.join(inst.args)}")

    def _i_maintainer(self, stage: _Stage, inst: Instruction) -> None:
        stage.config["__author"] = inst.args[0]
        self._commit_metadata(stage, f"MAINTAINER {inst.args[0]}")

    def _command(self, stage: _Stage, inst: Instruction) -> list[str]:
        return list(inst.args) if inst.json else [*stage.shell, inst.args[0] if inst.args else ""]

    def _i_cmd(self, stage: _Stage, inst: Instruction) -> None:
        stage.config["Cmd"] = self._command(stage, inst)
        stage.config["__cmd_set"] = True
        self._commit_metadata(stage, f"CMD {_display(inst)}")

    def _i_entrypoint(self, stage: _Stage, inst: Instruction) -> None:
        stage.config["Entrypoint"] = self._command(stage, inst)
        if not stage.config.get("__cmd_set"):
            stage.config["Cmd"] = None  # the base image's CMD does not outlive a new ENTRYPOINT
        self._commit_metadata(stage, f"ENTRYPOINT {_display(inst)}")

    def _i_shell(self, stage: _Stage, inst: Instruction) -> None:
        stage.shell = list(inst.args)
        stage.config["Shell"] = list(inst.args)
        self._commit_metadata(stage, f"SHELL {_display(inst)}")

    def _i_workdir(self, stage: _Stage, inst: Instruction) -> None:
        path = expand(inst.args[0], self._env(stage))
        stage.config["WorkingDir"] = posixpath.join(stage.config.get("WorkingDir") or "/", path)
        self._commit_metadata(stage, f"WORKDIR {path}")

    def _i_user(self, stage: _Stage, inst: Instruction) -> None:
        stage.config["User"] = expand(inst.args[0], self._env(stage))
        self._commit_metadata(stage, f"USER {stage.config['User']}")

    def _i_stopsignal(self, stage: _Stage, inst: Instruction) -> None:
        stage.config["StopSignal"] = expand(inst.args[0], self._env(stage))
        self._commit_metadata(stage, f"STOPSIGNAL {stage.config['StopSignal']}")

    def _i_expose(self, stage: _Stage, inst: Instruction) -> None:
        ports = dict(stage.config.get("ExposedPorts") or {})
        words = [w for arg in inst.args for w in expand_words(arg, self._env(stage))]
        for word in words:
            port, _, proto = word.partition("/")
            low, _, high = port.partition("-")
            if not low.isdigit() or (high and not high.isdigit()):
                raise BuildError(f"Dockerfile:{inst.line}: invalid containerPort: {port}")
            for p in range(int(low), int(high or low) + 1):
                ports[f"{p}/{(proto or 'tcp').lower()}"] = {}
        stage.config["ExposedPorts"] = ports
        self._commit_metadata(stage, f"EXPOSE {' '.join(words)}")

    def _i_volume(self, stage: _Stage, inst: Instruction) -> None:
        paths = list(inst.args) if inst.json else [w for a in inst.args for w in expand_words(a, self._env(stage))]
        if not paths or any(not p for p in paths):
            raise BuildError(f"Dockerfile:{inst.line}: VOLUME specified can not be an empty string")
        volumes = dict(stage.config.get("Volumes") or {})
        volumes.update({p: {} for p in paths})
        stage.config["Volumes"] = volumes
        self._commit_metadata(stage, f"VOLUME {paths}")

    def _i_healthcheck(self, stage: _Stage, inst: Instruction) -> None:
        if inst.args == ["NONE"]:
            stage.config["Healthcheck"] = {"Test": ["NONE"]}
        else:
            check: dict[str, Any] = {"Test": list(inst.args)}
            for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                              ("start-interval", "StartInterval")):
                if flag in inst.flags:
                    check[key] = _duration_ns(inst.flags[flag][-1], flag, inst)
            if "retries" in inst.flags:
                value = inst.flags["retries"][-1]
                if not value.isdigit() or int(value) < 1:
                    raise BuildError(f"Dockerfile:{inst.line}: --retries must be at least 1")
                check["Retries"] = int(value)
            stage.config["Healthcheck"] = check
        self._commit_metadata(stage, f"HEALTHCHECK {inst.raw_args}")

    def _i_onbuild(self, stage: _Stage, inst: Instruction) -> None:
        stage.config["OnBuild"] = [*(stage.config.get("OnBuild") or []), inst.args[0]]
        self._commit_metadata(stage, f"ONBUILD {inst.args[0]}")

    # ------------------------------------------------------------------ the cache

    def _key(self, stage: _Stage, kind: str, text: Any, sources: dict[str, str] | None = None) -> StepKey:
        parent = stage.image.id if stage.image is not None else "scratch"
        return StepKey(parent, kind, text if isinstance(text, str) else json.dumps(text, sort_keys=True),
                       dict(stage.args), dict(sources or {}), keyed_args=kind == "run")

    def _cached(self, stage: _Stage, key: StepKey, step: Callable[[], _Step]) -> bool:
        """A hit, in this host's build cache or in a --cache-from image (matched by what
        ``step()`` records): the step's image becomes the stage's ("Using cache"). A miss:
        False, after saying why when asked to."""
        exists = self.images.metadata.exists
        if not self.opts.no_cache:
            image_id = self.cache.get(key, exists)
            if image_id is None:
                image_id = self._from_sources(stage, step)
                if image_id is not None:
                    self.cache.put(key, image_id)
            if image_id is not None:
                self.say(" ---> Using cache\n")
                stage.image = self.images.resolve(image_id)
                return True
        if self.opts.explain_cache:
            why = "--no-cache" if self.opts.no_cache else self.cache.explain(key, exists)
            if why is None:
                why = f"it follows a step that ran ({self.first_miss})" if self.first_miss else \
                    "no earlier build ran this step on this image"
            self.say(f" ---> Cache miss: {why}\n")
        self.first_miss = self.first_miss or self.step
        return False

    def _from_sources(self, stage: _Stage, make_step: Callable[[], _Step]) -> str | None:
        if not self.sources.images:
            return None
        step = make_step()
        found = self.sources.find(stage.image, step.created_by, step.empty_layer)
        if found is None:
            return None
        write = None if found.layer is None else layer_writer(self.images.content, found)
        return self.images.add_step(stage.image, step.config, step.created_by, write_layer=write, author=step.author)

    # ------------------------------------------------------------------ images of steps

    def _image_config(self, stage: _Stage, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
        config = {k: v for k, v in stage.config.items() if k in _CONFIG_KEYS and v not in (None, "", [], {})}
        if extra_labels:
            config["Labels"] = {**(config.get("Labels") or {}), **extra_labels}
        return config

    def _commit_metadata(self, stage: _Stage, text: str, labels: dict[str, str] | None = None) -> None:
        config = self._image_config(stage, labels)
        author = stage.config.get("__author", "")
        key = self._key(stage, "metadata", [text, config, author])
        created_by = f"/bin/sh -c #(nop)  {text}"
        if self._cached(stage, key, lambda: _Step(created_by, True, config, author)):
            return
        image_id = self.images.add_step(stage.image, config, created_by, author=author)
        self.cache.put(key, image_id)
        stage.image = self.images.resolve(image_id)

    # ------------------------------------------------------------------ RUN

    def _i_run(self, stage: _Stage, inst: Instruction) -> None:
        if stage.image is None:
            raise BuildError(f"Dockerfile:{inst.line}: RUN needs a base image with a shell (this stage is FROM scratch with nothing in it)")
        if inst.json:
            argv = list(inst.args)
        else:
            script = inst.args[0] if inst.args else ""
            if len(inst.heredocs) == 1 and _HEREDOC_ONLY.fullmatch(script.strip()):
                script = inst.heredocs[0].content  # RUN <<EOF: the heredoc is the script
            else:
                for doc in inst.heredocs:  # the shell reads heredocs itself
                    script += "\n" + doc.content + doc.name
            argv = [*stage.shell, script]
        # the proxy args reach RUN without an ARG line, as docker passes them (and keeps them
        # out of the image and of the cache key)
        proxies = {k: v for k, v in self.opts.build_args.items()
                   if k in PREDEFINED_ARGS and v is not None and k not in stage.args}
        env = [f"{k}={v}" for k, v in {**proxies, **stage.args}.items()]
        workdir, user = stage.config.get("WorkingDir") or "", stage.config.get("User") or ""
        key = self._key(stage, "run", [argv, workdir, user, self.opts.network, self._image_config(stage)])
        # docker's: the build args in use, sorted, before the command ("|1 WHO=world /bin/sh -c ...")
        in_use = sorted(f"{k}={v}" for k, v in stage.args.items())
        created_by = " ".join([f"|{len(in_use)}", *in_use, *argv] if in_use else argv)
        if self._cached(stage, key, lambda: _Step(created_by, False, self._image_config(stage))):
            return
        body = {"Image": stage.image.id, "Cmd": argv, "Entrypoint": [""], "Env": env,
                "WorkingDir": workdir, "User": user,
                "Labels": {}, "AttachStdout": True, "AttachStderr": True,
                "HostConfig": {"NetworkMode": self.opts.network or "default"}}
        cid = self.containers.create(body, None)["Id"]
        self.say(f" ---> Running in {_short(cid)}\n")
        ok = cancelled = False
        try:
            code = self._run_attached(cid)
            cancelled = code is None
            if cancelled:
                raise BuildError("the build was cancelled")
            if code != 0:
                shown = json_list(argv) if inst.json else " ".join(argv)
                raise BuildError(f"The command '{shown}' returned a non-zero code: {code}", code)
            from dockyard.daemon.container_fs import commit

            image_id = commit(self.containers, cid, pause=False, config=self._image_config(stage),
                              created_by=created_by)
            self.cache.put(key, image_id)
            stage.image = self.images.resolve(image_id)
            ok = True
        finally:
            if ok and self.opts.remove or not ok and (self.opts.force_remove or self.opts.remove or cancelled):
                with contextlib.suppress(DockyardError):
                    self.containers.remove(cid, force=True)
                self.say(f"Removing intermediate container {_short(cid)}\n")

    def _run_attached(self, cid: str) -> int | None:
        """Start the container with its output streamed to the client; its exit code, or
        None when the client went away meanwhile (the container is killed)."""
        from dockyard.supervisor.client import SupervisorClient

        sock, reader = SupervisorClient(self.containers.supervisor_socket()).stream("attach", id=cid)
        try:
            wait = self.containers.wait_registration(cid, "not-running")
            self.containers.start(cid)
            done = threading.Event()
            killed = threading.Event()

            def watch() -> None:  # a quiet step must notice the client leaving too
                while not done.wait(0.5):
                    if self.cancelled():
                        killed.set()
                        with contextlib.suppress(DockyardError):
                            self.containers.kill(cid)
                        return

            watcher = threading.Thread(target=watch, name="build-watch", daemon=True)
            watcher.start()
            try:
                self._pump(reader)
            finally:
                done.set()
                watcher.join()
        finally:
            reader.close()
            sock.close()
        code = int(wait()["StatusCode"])
        return None if killed.is_set() else code

    def _pump(self, reader: Any) -> None:
        """The container's output frames to the client, stderr in docker's red."""
        while True:
            header = reader.read(8)
            if len(header) < 8:
                return
            payload = reader.read(int.from_bytes(header[4:8], "big"))
            text = payload.decode(errors="replace")
            self.say(f"\x1b[91m{text}\x1b[0m" if header[0] == 2 else text)

    # ------------------------------------------------------------------ COPY and ADD

    def _i_copy(self, stage: _Stage, inst: Instruction) -> None:
        self._copy(stage, inst, "COPY")

    def _i_add(self, stage: _Stage, inst: Instruction) -> None:
        self._copy(stage, inst, "ADD")

    def _copy(self, stage: _Stage, inst: Instruction, what: str) -> None:
        env = self._env(stage)
        if inst.heredocs:  # COPY <<EOF /path: each heredoc becomes a file named after it
            with self._heredoc_files(inst, env) as (root, words):
                self._copy_from(stage, inst, what, words, SourceTree(root), "context", shown=list(inst.args))
            return
        words = list(inst.args) if inst.json else [expand(a, env) for a in inst.args]
        urls = [w for w in words[:-1] if w.startswith(("http://", "https://"))]
        if urls and what == "COPY":
            raise BuildError(f"Dockerfile:{inst.line}: source can't be a URL for COPY")
        if urls:
            with self._downloaded(inst, urls) as (root, names):
                local = [names.get(w, w) for w in words[:-1]]
                self._copy_from(stage, inst, what, [*local, words[-1]], SourceTree(root), "context", shown=words)
            return
        if "checksum" in inst.flags:
            raise BuildError(f"Dockerfile:{inst.line}: checksum can't be specified for non-HTTP(S) sources")
        with self._source_root(inst) as (tree, label):
            self._copy_from(stage, inst, what, words, tree, label)

    @contextlib.contextmanager
    def _heredoc_files(self, inst: Instruction, env: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
        import shutil

        directory = tempfile.mkdtemp(prefix="heredoc-", dir=self.scratch)
        try:
            docs = {doc.name: doc for doc in inst.heredocs}
            words = []
            for word in inst.args[:-1]:
                m = _HEREDOC_ONLY.fullmatch(word)
                doc = docs.get(word.lstrip("<-").strip("\"'")) if m else None
                if doc is None:
                    raise BuildError(f"Dockerfile:{inst.line}: {inst.cmd.upper()} with a heredoc takes only heredocs "
                                     f"as sources, not {word!r}")
                content = expand_heredoc(doc.content, env) if doc.expand else doc.content
                with open(os.path.join(directory, doc.name), "w") as f:
                    f.write(content)
                os.chmod(os.path.join(directory, doc.name), 0o644)
                words.append(doc.name)
            yield directory, [*words, expand(inst.args[-1], env)]
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    @contextlib.contextmanager
    def _downloaded(self, inst: Instruction, urls: list[str]) -> Iterator[tuple[str, dict[str, str]]]:
        """ADD's URLs fetched into a scratch directory (the file name from the URL's path,
        its time from Last-Modified); ``--checksum`` checked. Yields (directory, url -> name)."""
        import email.utils
        import hashlib
        import shutil
        import urllib.error
        import urllib.request

        directory = tempfile.mkdtemp(prefix="add-", dir=self.scratch)
        try:
            names: dict[str, str] = {}
            for n, url in enumerate(urls):
                name = posixpath.basename(url.split("?", 1)[0].rstrip("/")) or f"download-{n}"
                path = os.path.join(directory, name)
                try:
                    with urllib.request.urlopen(url, timeout=60) as resp, open(path, "wb") as out:  # noqa: S310
                        digest = hashlib.sha256()
                        while chunk := resp.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                        modified = resp.headers.get("Last-Modified")
                except (urllib.error.URLError, OSError, ValueError) as e:
                    raise BuildError(f"ADD failed: error downloading {url}: {e}") from None
                if "checksum" in inst.flags:
                    want = inst.flags["checksum"][-1]
                    if not want.startswith("sha256:"):
                        raise BuildError(f"Dockerfile:{inst.line}: unsupported checksum algorithm: {want}")
                    if want != "sha256:" + digest.hexdigest():
                        raise BuildError(f"ADD failed: digest mismatch for {url}: expected {want}, got "
                                         f"sha256:{digest.hexdigest()}")
                os.chmod(path, 0o600)
                if modified:
                    with contextlib.suppress(TypeError, ValueError):
                        when = email.utils.parsedate_to_datetime(modified).timestamp()
                        os.utime(path, (when, when))
                names[url] = name
            yield directory, names
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    def _copy_from(self, stage: _Stage, inst: Instruction, what: str, words: list[str], tree: SourceTree,
                   label: str, shown: list[str] | None = None) -> None:
        root = tree.root
        sources, dest = words[:-1], words[-1]
        workdir = stage.config.get("WorkingDir") or "/"
        target = posixpath.normpath(posixpath.join(workdir, dest))
        dest_is_dir = dest.endswith("/") or posixpath.basename(dest) in (".", "..")  # "." names a directory
        chown = self._ids(stage, inst.flags["chown"][-1], inst) if "chown" in inst.flags else (0, 0)
        chmod = _mode(inst.flags["chmod"][-1], inst) if "chmod" in inst.flags else None
        matched: list[str] = []
        for source in sources:
            try:
                found = tree.glob(source)
            except InvalidArgument as e:
                raise BuildError(f"{what} failed: {e}") from None
            if not found:
                raise BuildError(f"{what} failed: file not found in build context or excluded by .dockerignore: "
                                 f"stat {source.lstrip('/')}: file does not exist" if label == "context"
                                 else f"{what} failed: stat {source}: file does not exist in {label}")
            matched += found
        if len(matched) > 1 and not dest.endswith("/"):
            raise BuildError(f"When using {what} with more than one source file, the destination must be a "
                             "directory and end with a /")
        digests = tree.digests(matched)
        key = self._key(stage, what.lower(), [words, chown, chmod, target, dest_is_dir, self._image_config(stage)],
                        sources=digests)

        def step() -> _Step:
            # docker's form, naming what is copied by a hash of it: "COPY file:<hex> in /app ";
            # made only when needed (a large context's digests are not hashed again for a hit)
            kind = "multi" if len(matched) > 1 else "dir" if os.path.isdir(os.path.join(root, matched[0])) else "file"
            flags = "".join(f"--{f}={inst.flags[f][-1]} " for f in ("chown", "chmod") if f in inst.flags)
            digest = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
            return _Step(f"/bin/sh -c #(nop) {what} {flags}{kind}:{digest} in {dest} ", False, self._image_config(stage))

        if self._cached(stage, key, step):
            return
        created_by = step().created_by
        from_url = shown is not None
        # as docker copies into the container's root: symlinks on the way to the destination
        # are followed inside it, and a file copied onto an existing directory goes into it
        target, is_dir = self._resolve_in_image(stage, target)
        dest_is_dir = dest_is_dir or is_dir

        def write(writer: Any) -> None:
            """The layer tar, streamed into the content writer."""
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                made: set[str] = set()
                for rel in matched:
                    full = os.path.join(root, rel)
                    st = os.lstat(full)
                    if stat.S_ISDIR(st.st_mode):
                        _parents(tf, target, made)
                        _add_tree(tf, tree, rel, target, chown, chmod, made)
                    elif what == "ADD" and not from_url and _is_archive(full):
                        _parents(tf, target, made)  # a local archive is unpacked at the destination
                        _add_archive(tf, full, target, made)
                    else:
                        name = posixpath.join(target, posixpath.basename(rel)) if dest_is_dir else target
                        _parents(tf, posixpath.dirname(name), made)
                        _add_file(tf, full, name, chown, chmod)

        parent = stage.image

        try:
            image_id = self.images.add_step(parent, self._image_config(stage), created_by, write_layer=write)
        except InvalidArgument as e:  # a source the layer cannot carry
            raise BuildError(f"{what} failed: {e}") from None
        self.cache.put(key, image_id)
        stage.image = self.images.resolve(image_id)

    def _ids(self, stage: _Stage, spec: str, inst: Instruction) -> tuple[int, int]:
        """``--chown=user[:group]``: IDs as given, names looked up in the stage's
        /etc/passwd and /etc/group (read inside its root, never following a link out of
        it). A user without a group: the group is the same number, as docker does."""
        spec = expand(spec, self._env(stage))
        user, _, group = spec.partition(":")
        if user.isdigit() and (not group or group.isdigit()):
            return int(user), int(group or user)
        passwd = self._image_file(stage, "etc/passwd") if not user.isdigit() else ""
        groups = self._image_file(stage, "etc/group") if group and not group.isdigit() else ""

        def lookup(table: str, name: str, what: str) -> int:
            for line in table.splitlines():
                fields = line.split(":")
                if len(fields) > 2 and fields[0] == name and fields[2].isdigit():
                    return int(fields[2])
            raise BuildError(f"Dockerfile:{inst.line}: unable to convert uid/gid chown string to host mapping: "
                             f"can't find {what} for {name}")

        uid = int(user) if user.isdigit() else lookup(passwd, user, "uid")
        gid = (int(group) if group.isdigit() else lookup(groups, group, "gid")) if group else uid
        return uid, gid

    @contextlib.contextmanager
    def _mounted(self, image: Any) -> Iterator[str]:
        """An image's root, mounted read-only for a step (an empty directory for an image
        without layers); unmounted and its view removed after."""
        if image is None or not image.chain:
            empty = tempfile.mkdtemp(prefix="empty-", dir=self.scratch)
            try:
                yield empty
            finally:
                os.rmdir(empty)
            return
        from dockyard.mount import temp_mount

        key = f"view-build-{uuid.uuid4().hex}"
        mounts = self.images.snapshotter.view(key, image.chain[-1])
        try:
            with temp_mount(mounts, dir=self.scratch) as root:
                yield root
        finally:
            self.images.snapshotter.remove(key)

    @contextlib.contextmanager
    def _image_root(self, image: Any) -> Iterator[tuple[str, int]]:
        """The image's root mounted read-only, and an O_PATH fd of it for paths resolved
        inside it (openat2 RESOLVE_IN_ROOT: a symlink never leads out)."""
        with self._mounted(image) as root:
            fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                yield root, fd
            finally:
                os.close(fd)

    def _resolve_in_image(self, stage: _Stage, path: str) -> tuple[str, bool]:
        """``path`` (absolute) in the stage's image with the symlinks of its longest existing
        directory prefix resolved inside the root, and whether all of it is a directory."""
        from dockyard.syscalls import Resolve, openat2

        parts = [p for p in path.split("/") if p]
        if stage.image is None or not stage.image.chain:
            return "/" + "/".join(parts), not parts
        with self._image_root(stage.image) as (root, rootfd):
            for i in range(len(parts), -1, -1):  # "." (i == 0) always opens
                try:
                    fd = openat2(rootfd, "/".join(parts[:i]) or ".", os.O_PATH | os.O_DIRECTORY,
                                 resolve=Resolve.IN_ROOT | Resolve.NO_MAGICLINKS)
                except OSError:  # missing, not a directory, a link loop: look one level up
                    continue
                try:
                    real = os.path.relpath(os.readlink(f"/proc/self/fd/{fd}"), os.path.realpath(root))
                finally:
                    os.close(fd)
                head = [] if real == "." else real.split("/")
                return "/" + "/".join([*head, *parts[i:]]), i == len(parts)
        return path, False

    def _image_file(self, stage: _Stage, path: str) -> str:
        """A file of the stage's image, read inside its root ("" when it has none)."""
        from dockyard.syscalls import Resolve, openat2

        with self._image_root(stage.image) as (_, rootfd):
            try:
                fd = openat2(rootfd, path, os.O_RDONLY, resolve=Resolve.IN_ROOT | Resolve.NO_MAGICLINKS)
            except FileNotFoundError:
                return ""
            with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
                return f.read(1 << 20)

    @contextlib.contextmanager
    def _source_root(self, inst: Instruction) -> Iterator[tuple[SourceTree, str]]:
        """Where COPY's sources are: the context, or ``--from``'s earlier stage (by name or
        number) or image, whose root is mounted read-only for the step."""
        if "from" not in inst.flags:
            yield self.source, "context"
            return
        source = inst.flags["from"][-1]
        image = None
        for number, earlier in enumerate(self.stages[:-1]):
            if source.lower() == earlier.name or source == str(number):
                image, label = earlier.image, f"stage {source}"
                break
        else:
            if source.isdigit():
                raise BuildError(f"Dockerfile:{inst.line}: invalid from flag value {source}: "
                                 "refers to a stage that is not defined before this one")
            if source.lower() == (self.stages[-1].name or None):
                raise BuildError(f"Dockerfile:{inst.line}: circular dependency detected on stage: {source}")
            try:
                image, label = self._base_image(source, inst, self._platform(self.opts.platform, inst)), f"image {source}"
            except DockyardError as e:
                raise BuildError(f"Dockerfile:{inst.line}: --from={source}: no build stage and no image of that "
                                 f"name: {e}") from None
        with self._mounted(image) as root:
            yield SourceTree(root), label

def json_list(argv: list[str]) -> str:
    import json

    return json.dumps(argv)


def _display(inst: Instruction) -> str:
    return json_list(inst.args) if inst.json else (inst.args[0] if inst.args else "")


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _duration_ns(text: str, flag: str, inst: Instruction) -> int:
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
             "h": 3_600_000_000_000}
    total, number = 0.0, ""
    i = 0
    try:
        while i < len(text):
            if text[i].isdigit() or text[i] == ".":
                number += text[i]
                i += 1
                continue
            unit = next(u for u in sorted(units, key=len, reverse=True) if text.startswith(u, i))
            total += float(number) * units[unit]
            number, i = "", i + len(unit)
        if number or not text:
            raise ValueError
    except (StopIteration, ValueError):
        raise BuildError(f"Dockerfile:{inst.line}: invalid --{flag}: time: invalid duration \"{text}\"") from None
    return int(total)


def _mode(text: str, inst: Instruction) -> int:
    try:
        mode = int(text, 8)
    except ValueError:
        raise BuildError(f"Dockerfile:{inst.line}: invalid chmod parameter: {text}") from None
    if mode > 0o7777:
        raise BuildError(f"Dockerfile:{inst.line}: invalid chmod parameter: {text}")
    return mode


def _is_archive(path: str) -> bool:
    """A tar, plain or compressed (what docker's ADD unpacks)."""
    try:
        with tarfile.open(path, "r:*") as tf:
            return tf.next() is not None
    except (tarfile.TarError, OSError, EOFError):
        return False


def _add_archive(tf: tarfile.TarFile, path: str, target: str, made: set[str]) -> None:
    """Each member of the archive at ``path`` re-rooted under ``target``; names (and hard
    link targets) cleaned so nothing lands outside it."""
    from dockyard.archive.apply import clean

    with tarfile.open(path, "r:*") as src:
        for member in src:
            name = clean(member.name)
            if not name:
                continue
            member.name = posixpath.join(target, name).lstrip("/")
            _not_a_whiteout(member.name)
            if member.islnk():
                member.linkname = posixpath.join(target, clean(member.linkname)).lstrip("/")
            _parents(tf, posixpath.dirname(member.name), made)
            if member.isdir():
                made.add(member.name)
            tf.addfile(member, src.extractfile(member) if member.isreg() else None)


def _parents(tf: tarfile.TarFile, path: str, made: set[str]) -> None:
    """Directories leading to ``path`` that the layer must carry (root-owned, 0755)."""
    parts = [p for p in path.strip("/").split("/") if p]
    for i in range(1, len(parts) + 1):
        name = "/".join(parts[:i])
        if name not in made:
            made.add(name)
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(time.time())
            tf.addfile(info)


def _not_a_whiteout(name: str) -> None:
    """A layer entry named .wh.* hides files (OCI whiteouts): refused rather than letting a
    copied file vanish, or delete another, wherever the image is unpacked (as in docker)."""
    if posixpath.basename(name.rstrip("/")).startswith(WHITEOUT_PREFIX):
        raise InvalidArgument(f"cannot copy {name.lstrip('/')}: names starting with {WHITEOUT_PREFIX} are reserved "
                              "for layer whiteouts")


def _info(full: str, name: str, chown: tuple[int, int], chmod: int | None) -> tarfile.TarInfo:
    _not_a_whiteout(name)
    st = os.lstat(full)
    info = tarfile.TarInfo(name.lstrip("/"))
    info.mtime = st.st_mtime
    info.uid, info.gid = chown
    info.mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(full)
        info.mode = 0o777
    elif stat.S_ISREG(st.st_mode):
        info.size = st.st_size
    else:
        raise InvalidArgument(f"cannot copy {name}: not a regular file, directory or symlink")
    return info


def _add_file(tf: tarfile.TarFile, full: str, name: str, chown: tuple[int, int], chmod: int | None) -> None:
    info = _info(full, name, chown, chmod)
    if info.type == tarfile.REGTYPE:
        with open(full, "rb") as f:
            tf.addfile(info, f)
    else:
        tf.addfile(info)


def _add_tree(tf: tarfile.TarFile, tree: SourceTree, top: str, base: str, chown: tuple[int, int],
              chmod: int | None, made: set[str]) -> None:
    """A directory's contents (not the directory itself: docker's COPY dir/ dest)."""
    prefix = "" if top in ("", ".") else top + "/"
    for rel in tree.walk(top):
        arc = posixpath.join(base, rel[len(prefix):])
        made.add(arc.strip("/"))
        _add_file(tf, os.path.join(tree.root, rel), arc, chown, chmod)


__all__ = ["Build", "BuildError", "BuildOptions"]
