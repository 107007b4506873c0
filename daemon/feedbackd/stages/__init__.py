"""The stages one inbound message passes through, in this order and in one direction.

``record``     deduplicate (by the raw bytes), keep the raw bytes, store the message and its attachments
``casework``   decide the case (threading, with one rule for who may join one), open, join or note it, route
``answer``     the one path that writes to the sender: acknowledgement or quarantine notice, within budget
``quarantine`` keep what no stage could handle, with the reason, for a person and ``quarantine replay``

``feedbackd.pipeline`` walks them inside the message's transaction.  A stage learns what earlier
stages found from the :class:`~feedbackd.stages.state.MessageState` it is given and never calls a
later stage itself: the pipeline does, so the flow can be read in one place.
"""
