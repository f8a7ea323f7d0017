"""BTF and BTF.ext: parsing, type queries, C text, the value codec, special fields, BTF-defined
maps and the bpftool-style dump (formats: uapi ``linux/btf.h``, libbpf ``libbpf_internal.h``;
semantics: docs/semantics.md#btf).

Layered like pyelftools' readers, one job per module:

* :mod:`.types` -- :class:`Kind` and one frozen dataclass per kind;
* :mod:`.reader` -- bounds-checked reads shared by both sections;
* :mod:`.core` -- CO-RE: relocations resolved against a target BTF and patched into instructions;
* :mod:`.parse` -- the ``.BTF`` reader (:func:`parse_btf`); :mod:`.ext` -- ``.BTF.ext``
  (:func:`parse_btf_ext`: func_info, line_info, CO-RE relocations);
* :mod:`.index` -- the :class:`BTF` container: lookups, modifiers, sizes and alignment, DATASECs;
* :mod:`.ctext` (:func:`describe`), :mod:`.values` (:func:`format_value`, :func:`encode_value`),
  :mod:`.special` (:func:`find_special_fields`), :mod:`.functions` (function-pointer slots and
  prototype matching), :mod:`.mapdefs` (:func:`map_definitions`),
  :mod:`.text` (:func:`dump_records`, :func:`dump_lines`) -- each a function of a ``BTF``.

Types live in ``BTF.types`` (index = type id; id 0 is ``void``). Every problem with the input is a
:class:`~bpfjit.errors.BTFError` whose message names the type id or the byte offset; no other
exception escapes for malformed data.

What the ELF loader must do with the output (clang leaves it to libbpf): clang emits ``DATASEC``
records whose ``size`` and variable offsets may be zero; call :meth:`BTF.fix_datasec` for every
data section (and ``.maps``) with the ELF section size and the symbols' ``st_value`` before using
:meth:`BTF.datasecs` or :func:`map_definitions` -- the same fix-up libbpf's ``btf_fixup_datasec``
does, including turning ``STV_HIDDEN``/``STV_INTERNAL`` variables into static ones.
"""
from __future__ import annotations

from .ctext import describe
from .ext import (BTF_EXT_CORE_HDR_LEN, BTFExt, CoreRelo, CoreReloKind, FuncInfo, LineInfo, has_core_relos,
                  parse_btf_ext)
from .index import BTF
from .mapdefs import MAPS_SECTION, PIN_BY_NAME, PIN_NONE, MapDef, map_definitions
from .parse import BTF_HDR_LEN, BTFHeader, parse_btf
from .reader import BTF_MAGIC, BTF_VERSION
from .special import KPTR_TAGS, MAX_SPECIAL_FIELDS, KptrField, SpecialFields, find_special_fields
from .text import dump_lines, dump_records
from .types import (FUNC_EXTERN, FUNC_GLOBAL, FUNC_STATIC, INT_BOOL, INT_CHAR, INT_SIGNED,
                    MAX_NESTING, MODIFIER_KINDS, VAR_GLOBAL_ALLOCATED, VAR_GLOBAL_EXTERN,
                    VAR_STATIC, Array, BTFType, Datasec, DatasecVar, DeclTag, Enum, EnumValue,
                    Float, Func, FuncProto, Fwd, Int, Kind, Member, Modifier, Param, Ptr, Struct,
                    UnknownType, Var, VarSecInfo, Void, kind_name)
from .functions import (FunctionPointer, FunctionPointerFacts, function_pointers, function_prototypes,
                        prototype_mismatch, prototype_of)
from .values import PointerCodec, encode_value, format_value

__all__ = [
    "BTF", "BTF_EXT_CORE_HDR_LEN", "BTF_HDR_LEN", "BTF_MAGIC", "BTF_VERSION", "FUNC_EXTERN",
    "FUNC_GLOBAL", "FUNC_STATIC", "INT_BOOL", "INT_CHAR", "INT_SIGNED", "KPTR_TAGS", "MAPS_SECTION",
    "MAX_NESTING", "MAX_SPECIAL_FIELDS", "MODIFIER_KINDS", "PIN_BY_NAME", "PIN_NONE",
    "VAR_GLOBAL_ALLOCATED", "VAR_GLOBAL_EXTERN", "VAR_STATIC", "Array", "BTFExt", "BTFHeader",
    "BTFType", "CoreRelo", "CoreReloKind", "Datasec", "DatasecVar", "DeclTag", "Enum", "EnumValue",
    "Float", "Func", "FuncInfo", "FuncProto", "FunctionPointer", "FunctionPointerFacts",
    "Fwd", "Int", "Kind", "KptrField", "LineInfo",
    "MapDef", "Member", "Modifier", "Param", "PointerCodec", "Ptr", "SpecialFields", "Struct", "UnknownType", "Var",
    "VarSecInfo", "Void", "describe", "dump_lines", "dump_records", "encode_value",
    "find_special_fields", "format_value", "function_pointers", "function_prototypes", "has_core_relos", "kind_name",
    "map_definitions", "parse_btf",
    "parse_btf_ext", "prototype_mismatch", "prototype_of"
]
