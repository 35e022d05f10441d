"""Everything about MOCO that its API document does not give: one place, each configurable.

Each entry is marked `# not in the vendor document`. An instance overrides paths through
`options.resource_paths` / `options.command_paths`, and listing parameters through
`options.poll_params` (`MocoOptions`, at the end).
"""

from __future__ import annotations

from datetime import timedelta

from adapters.settings import PolledVendorOptions

# Collection paths. The document shows only /projects, /customers and /offers.
RESOURCE_PATHS = {
    "projects": "/projects",  # shown in the document
    "offers": "/offers",  # shown in the document
    "companies": "/companies",  # not in the vendor document (it shows /customers for creation)
    "activities": "/activities",  # not in the vendor document
    "users": "/users",  # not in the vendor document
    "deals": "/deals",  # not in the vendor document
    "invoices": "/invoices",  # not in the vendor document
}

# Paths of the command catalogue: (path, guessed). The document creates customers at
# /customers; the records are "companies" elsewhere in MOCO.
COMMAND_PATHS = {
    "activity": ("/activities", True),  # not in the vendor document
    "project": ("/projects", False),
    "company": ("/companies", True),  # not in the vendor document
}

# Resources whose updates are merged with the current custom properties (the document
# shows custom fields on customers and says "many of its resources"). Which resources carry
# them is not said, so every resource the catalogue updates is taken to: an update of one
# that has none costs a read and sends what it would have sent anyway, while leaving one out
# that has them lets MOCO erase them.
CUSTOM_PROPERTY_RESOURCES = frozenset(  # not in the vendor document
    {"activity", "project", "company"}
)

# X-Moco-Target values that name a resource differently from its collection, so that
# webhook and polled events of one record share a subject (and so a partition).
TARGET_RESOURCES = {
    "Customer": "company",  # not in the vendor document: the document lists "Customer"
    "Company": "company",  # not in the vendor document
}

# The document shows X-Per-Page in answers but names no request parameter for it.
PAGE_SIZE_PARAM = "per_page"  # not in the vendor document

# What a poll asks its listings for: newest change first, the order in which a change made
# while a listing is paged cannot hide another record (adapters/core/listing_guard.py). The
# document's sort_by takes "the field name"; that every resource sorts by updated_at is a
# guess. Whatever the vendor sends back is checked page by page, and an instance may change
# or drop (null) a parameter per resource in `options.poll_params`.
POLL_PARAMS = {"sort_by": "updated_at desc"}  # not in the vendor document

# How far before a pass's floor a poll reads the events topic back for what the webhooks
# published (a push is produced after its change; this covers Kafka's clock behind MOCO's).
# A choice, not in the vendor document; `polling.skip_published: false` turns skipping off.
PUBLISHED_MARGIN = timedelta(minutes=5)


class MocoOptions(PolledVendorOptions, kw_only=True, forbid_unknown_fields=True):
    """MOCO's `options`: collection and command paths, where an account's differ from these."""

    def __post_init__(self) -> None:
        # An instance names only the paths it changes; the others keep the guesses above.
        self.resource_paths = {**RESOURCE_PATHS, **self.resource_paths}
