"""Containers: the Docker API's create body validated and merged with the image config
(``config``), names (``names``), and the OCI config.json built from them (``ocispec``).

config.py   normalize_create(body, image_config, ...) -> CreateResult(config, host_config,
            warnings): docker's JSON shapes as inspect shows them, defaults filled, merged
            with the image the way docker does, validated with docker's wording
            (InvalidArgument).
names.py    validate_name(name), random_name(), generate_name(taken).
ocispec.py  build_spec(container_id, config, host_config, rootfs, ...) -> config.json dict
            (HostConfig.Init, or the daemon's default_init, becomes the annotation
            org.dockyard.init: "true"; a missing -w directory is created in the rootfs),
            and resolve_user(rootfs, user, group_add) reading the container's own
            /etc/passwd and /etc/group without leaving the rootfs.
"""
