"""The offline graph viewer: one self-contained HTML page per graph JSON (click, hover, pruning
sliders, subgraph and supernodes, state in the URL fragment), and a gallery index."""

from scrying.viewer.gallery import GalleryEntry, index_html, read_graph_json, render_gallery
from scrying.viewer.inline import inline_html, notebook_setup, screenshot_png, show
from scrying.viewer.page import PageConfig, check_graph_json, render_page, write_page
from scrying.viewer.state import ViewState, read_state, with_state

__all__ = [
    "GalleryEntry",
    "PageConfig",
    "ViewState",
    "check_graph_json",
    "index_html",
    "inline_html",
    "notebook_setup",
    "read_graph_json",
    "read_state",
    "render_gallery",
    "render_page",
    "screenshot_png",
    "show",
    "with_state",
    "write_page",
]
