"""`bfvr ui`: a local web page (Gradio) over the library, for people who would rather not use a terminal.

`bfvr.ui.core` holds everything that is not Gradio (the UI's own temporary folder, upload checks and
limits, model availability, a restore job with progress and cancel); `bfvr.ui.app` builds the page
and serves it. Gradio is the optional extra ``bfvr[ui]``; `bfvr.ui.core` does not import it.
"""
