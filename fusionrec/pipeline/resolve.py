"""Person resolution: which person an event belongs to, across platforms."""

from __future__ import annotations

from fusionrec.contracts import BehaviorEvent, IdentityLink

__all__ = ["Identity"]


class Identity:
    """Platform user id → person id, from identity links; unlinked users are their own person.

    An event's own ``person_id`` wins; else the link of ``(platform, user_id)``; else the person
    ``"<platform>:<user_id>"``.  Links apply to events that arrive after them.

        >>> ids = Identity()
        >>> ids.link(IdentityLink("shop", "u1", "alice"))
        >>> ids.person_of(BehaviorEvent("e", 0.0, "shop", "u1", "i", "click")), ids.resolve("video", "u1")
        ('alice', 'video:u1')
    """

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], str] = {}

    def link(self, link: IdentityLink) -> None:
        self._links[(link.platform, link.user_id)] = link.person_id

    def unlink(self, platform: str, user_id: str) -> None:
        self._links.pop((platform, user_id), None)

    def resolve(self, platform: str, user_id: str, person_id: str | None = None) -> str:
        if person_id:
            return person_id
        return self._links.get((platform, user_id)) or f"{platform}:{user_id}"

    def person_of(self, event: BehaviorEvent) -> str:
        return self.resolve(event.platform, event.user_id, event.person_id)

    def __len__(self) -> int:
        return len(self._links)
