"""Image bytes on OpenStack (Glance): download, and upload once."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from seawall.clouds.openstack.connection import CloudConnection
from seawall.clouds.openstack.discovery import Discovery
from seawall.clouds.openstack.naming import MD5_TAG, strings_to_tags
from seawall.clouds.schema import check_image_upload
from seawall.errors import Conflict
from seawall.model import ResourceKind, ResourceRef

K = ResourceKind
_CHUNK = 4 << 20


class Images:
    """Glance image data of one project."""

    def __init__(
        self, connection: CloudConnection, discovery: Discovery, *, timeout: float
    ) -> None:
        self.connection = connection
        self.discovery = discovery
        self.timeout = timeout

    @property
    def conn(self) -> Any:
        return self.connection.conn

    def read_image(self, image_id: str) -> Iterator[bytes]:
        image = self.connection.call(
            f"reading image {image_id}", lambda: self.conn.image.get_image(image_id)
        )
        if image.status != "active":
            raise Conflict(f"image {image.name} has no data yet (status {image.status})")

        def chunks() -> Iterator[bytes]:
            with self.connection.api(f"downloading image {image_id}"):
                resp = self.conn.image.download_image(image, stream=True)
                yield from resp.iter_content(_CHUNK)

        return chunks()

    def write_image(self, image_id: str, chunks: Iterable[bytes]) -> None:
        """Upload once (Glance's rule); the same bytes again are a no-op. When created
        with a ``checksum`` (md5) the data must match it."""
        image = self.connection.call(
            f"reading image {image_id}", lambda: self.conn.image.get_image(image_id)
        )
        fd, name = tempfile.mkstemp(prefix="seawall-image-")
        md5 = hashlib.md5(usedforsecurity=False)
        try:
            with open(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    md5.update(chunk)
            checksum = md5.hexdigest()
            # the source data's md5: a tag (an earlier version's property is read too)
            marks = strings_to_tags(image.tags or [])
            expected = marks.get(MD5_TAG) or (image.properties or {}).get(MD5_TAG) or ""
            active = image.status == "active"
            if not check_image_upload(
                image.name, checksum, active=active, held=image.checksum, expected=expected
            ):
                return
            with self.connection.api(f"uploading image {image_id}"), open(name, "rb") as data:
                from openstack import exceptions as os_exc

                os_exc.raise_from_response(image.upload(self.conn.image, data=data))
        finally:
            Path(name).unlink(missing_ok=True)
        self.discovery.wait_for_status(ResourceRef(K.IMAGE, image_id), "active", self.timeout)
