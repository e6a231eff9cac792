"""Searching start documents with the MongoDB query language.

:mod:`.evaluate` validates queries and evaluates them with MongoDB's
semantics; :mod:`.time` turns dates into epoch seconds (``TimeRange``);
:mod:`.starts` filters, sorts and pages a collection of start documents for
the backends that cannot push a query down (files, memory).
"""
