"""Image endpoints: list, inspect, history, tag, remove, import, save, load, prune."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from dockyard.daemon.api.server import PARAMS_KEY, Router, engine_of, filters, param, qbool
from dockyard.daemon.api.streams import JSONMessages, buffered_body, stream_bytes
from dockyard.errors import DockyardError, InvalidArgument, Unauthorized


def _labels(engine: object, image_id: str) -> dict[str, str]:
    try:
        return dict(engine.images.inspect(image_id)["Config"].get("Labels") or {})  # type: ignore[attr-defined]
    except (DockyardError, KeyError, AttributeError):
        return {}  # deleted already


def _image_event(engine: object, action: str, image_id: str, name: str | None = None,
                 labels: dict[str, str] | None = None) -> None:
    """docker's image event: the image's labels (while it exists) and ``name``; blocking."""
    attrs = _labels(engine, image_id) if labels is None else dict(labels)
    attrs["name"] = name or image_id
    engine.events.emit("image", action, image_id, attrs)  # type: ignore[attr-defined]


async def list_images(request: web.Request) -> web.Response:
    svc = engine_of(request).images
    result = await asyncio.to_thread(svc.list, filters(request), qbool(request, "digests"), qbool(request, "all"))
    return web.json_response(result)


async def inspect_image(request: web.Request) -> web.Response:
    svc = engine_of(request).images
    return web.json_response(await asyncio.to_thread(svc.inspect, param(request, "name")))


async def image_history(request: web.Request) -> web.Response:
    svc = engine_of(request).images
    return web.json_response(await asyncio.to_thread(svc.history, param(request, "name")))


async def tag_image(request: web.Request) -> web.Response:
    svc = engine_of(request).images
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    await asyncio.to_thread(svc.tag, param(request, "name"), repo, request.query.get("tag") or None)

    def event() -> None:
        from dockyard.reference import parse_repo_tag

        new = parse_repo_tag(repo, request.query.get("tag") or None).familiar()
        _image_event(engine_of(request), "tag", svc.resolve_id(new), new)

    await asyncio.to_thread(event)
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.Response:
    svc = engine_of(request).images
    await asyncio.to_thread(engine_of(request).containers.settle)  # their layers sit on the image's
    image_id = await asyncio.to_thread(svc.resolve_id, param(request, "name"))
    labels = await asyncio.to_thread(_labels, engine_of(request), image_id)  # untag: as it was
    result = await asyncio.to_thread(svc.remove, param(request, "name"), qbool(request, "force"),
                                     engine_of(request).containers.image_user)

    def events() -> None:
        for entry in result:
            if "Untagged" in entry:
                _image_event(engine_of(request), "untag", image_id, labels=labels)
            elif entry.get("Deleted") == image_id:
                _image_event(engine_of(request), "delete", image_id, labels={})

    await asyncio.to_thread(events)
    return web.json_response(result)


async def _pull(request: web.Request) -> web.StreamResponse:
    from dockyard import reference
    from dockyard.distribution.pull import list_tags, pull, pull_all_tags, resolve
    from dockyard.images.model import parse_platform

    image, tag = request.query.get("fromImage", ""), request.query.get("tag") or ""
    name = image if not tag else f"{image}@{tag}" if tag.startswith("sha256:") else f"{image}:{tag}"
    ref = reference.parse(name)  # a bad name is a 400 before the stream starts
    # docker: a name with neither tag nor digest (an empty tag: ``pull --all-tags``) pulls
    # every tag of the repository
    all_tags = reference.parse(name, default_tag=False).tag is None and ref.digest is None
    platform = parse_platform(request.query["platform"]) if request.query.get("platform") else None
    engine = engine_of(request)
    auth = registry_auth(request)
    # so is a missing manifest (or, for all tags, a missing repository); never a 401, on
    # which docker's CLI would prompt for a login, as it does for nothing dockerd answers
    try:
        if all_tags:
            tags = await asyncio.to_thread(list_tags, ref.name, auth=auth, hosts=engine.registries)
        else:
            plan = await asyncio.to_thread(resolve, str(ref), platform, auth=auth, hosts=engine.registries)
    except Unauthorized as e:
        raise DockyardError(str(e)) from None
    messages = JSONMessages(request)
    await messages.start()
    emit = messages.send_threadsafe
    try:
        if all_tags:
            pulled = await asyncio.to_thread(pull_all_tags, engine.images, ref.name, tags, emit, platform,
                                             auth=auth, hosts=engine.registries)
        else:
            pulled = [(await asyncio.to_thread(pull, engine.images, plan, emit), ref.familiar())]
        for image_id, pulled_name in pulled:
            await asyncio.to_thread(_image_event, engine, "pull", image_id, pulled_name)
    except Exception as e:  # headers are sent: the error travels in the stream
        await messages.error(e)
    return await messages.finish()


def registry_auth(request: web.Request):  # noqa: ANN201 - AuthConfig | None, imported lazily
    from dockyard.distribution.auth import AuthConfig

    return AuthConfig.from_header(request.headers.get("X-Registry-Auth"))


async def push_image(request: web.Request) -> web.StreamResponse:
    """POST /images/{name}/push?tag=: an empty tag pushes every tag of the repository."""
    from dockyard.distribution.push import push, push_targets

    engine = engine_of(request)
    auth = registry_auth(request)
    targets = await asyncio.to_thread(push_targets, engine.images, param(request, "name"),
                                      request.query.get("tag", ""))
    messages = JSONMessages(request)
    await messages.start()
    try:
        await asyncio.to_thread(push, engine.images, targets, messages.send_threadsafe, auth=auth,
                                hosts=engine.registries)
        for ref, image_id in targets:
            await asyncio.to_thread(_image_event, engine, "push", image_id, ref.familiar())
    except Exception as e:  # headers are sent: the error travels in the stream
        await messages.error(e)
    return await messages.finish()


async def create_image(request: web.Request) -> web.StreamResponse:
    """POST /images/create: ``fromSrc`` imports a root filesystem; ``fromImage`` pulls."""
    if "fromImage" in request.query:
        return await _pull(request)
    src = request.query.get("fromSrc")
    if src is None:
        raise InvalidArgument("either fromSrc or fromImage must be specified")
    if src != "-":
        raise InvalidArgument(f"importing from a URL is not supported: {src}")
    svc = engine_of(request).images
    repo = request.query.get("repo") or None
    tag = request.query.get("tag") or None
    changes = request.query.getall("changes", [])
    message = request.query.get("message", "")
    body = buffered_body(request)
    messages = JSONMessages(request)
    await messages.start()
    try:
        image_id = await asyncio.to_thread(svc.import_image, body, repo, tag, changes, message)
        await asyncio.to_thread(_image_event, engine_of(request), "import", image_id)
        await messages.send({"status": image_id})
    except Exception as e:  # headers are sent: the error travels in the stream
        await messages.error(e)
    return await messages.finish()


async def save_images(request: web.Request) -> web.StreamResponse:
    names = request.query.getall("names", [])
    if "name" in request[PARAMS_KEY]:
        names = [param(request, "name")]
    if not names:
        raise InvalidArgument("no images specified")
    svc = engine_of(request).images
    # resolve first, so that a missing image is a 404 rather than a broken stream
    ids = [await asyncio.to_thread(svc.resolve_id, n) for n in names]
    response = await stream_bytes(request, lambda out: svc.save(names, out), "application/x-tar")
    for image_id in dict.fromkeys(ids):
        await asyncio.to_thread(_image_event, engine_of(request), "save", image_id)
    return response


async def load_images(request: web.Request) -> web.StreamResponse:
    svc = engine_of(request).images
    body = buffered_body(request)
    messages = JSONMessages(request)
    await messages.start()
    try:
        lines = await asyncio.to_thread(svc.load, body, None)
        for line in lines:
            await messages.send({"stream": line + "\n"})

        def events() -> None:
            loaded: dict[str, None] = {}
            for line in lines:
                what = line.removeprefix("Loaded image ID: ").removeprefix("Loaded image: ")
                if what != line:
                    with contextlib.suppress(DockyardError):
                        loaded[svc.resolve_id(what)] = None
            for image_id in loaded:
                _image_event(engine_of(request), "load", image_id)

        await asyncio.to_thread(events)
    except Exception as e:
        await messages.error(e)
    return await messages.finish()


async def prune_images(request: web.Request) -> web.Response:
    svc = engine_of(request).images
    flt = filters(request)
    dangling_only = (flt.pop("dangling", ["true"])[-1].lower() in ("true", "1"))
    wanted = {"dangling": ["true"]} if dangling_only else {}
    if "label" in flt:
        wanted["label"] = flt["label"]
    deleted: list[dict[str, str]] = []
    reclaimed = 0
    containers = engine_of(request).containers
    await asyncio.to_thread(containers.settle)
    for summary in await asyncio.to_thread(svc.list, wanted):
        if await asyncio.to_thread(containers.image_user, summary["Id"]):
            continue  # an image a container uses is never pruned
        try:
            deleted += await asyncio.to_thread(svc.remove, summary["Id"], True)
            reclaimed += summary["Size"]
        except Exception:
            continue
    return web.json_response({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def register(router: Router) -> None:
    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create_image)
    router.add("POST", "/images/load", load_images)
    router.add("POST", "/images/prune", prune_images)
    router.add("GET", "/images/get", save_images)
    router.add("GET", "/images/{name:.+}/json", inspect_image)
    router.add("GET", "/images/{name:.+}/history", image_history)
    router.add("GET", "/images/{name:.+}/get", save_images)
    router.add("POST", "/images/{name:.+}/tag", tag_image)
    router.add("POST", "/images/{name:.+}/push", push_image)
    router.add("DELETE", "/images/{name:.+}", remove_image)
