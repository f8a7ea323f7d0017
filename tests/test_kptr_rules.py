"""The rules of kptrs, each broken by one program of tests/progs/kptr_rules.c and rejected at
load with the kernel's message (kernel/bpf/verifier.c check_map_access, check_map_kptr_access,
map_kptr_match_type, process_kptr_func, check_ptr_to_btf_access, the kfunc argument checks of
bpf_obj_new and bpf_obj_drop; the messages of the kernel's map_kptr_fail.c where it has the
case); and the map rules: a kptr points to a struct, and a map holding kptrs is never
read-only for programs, mmapable or frozen (docs/semantics.md#kptrs)."""
from __future__ import annotations

import pathlib

import pytest

import bpfjit
from bpfjit.errors import MapError
from bpfjit.runtime import elf
from bpfjit.runtime.kfuncs import is_kfunc_call, kfunc_id
from bpfjit.runtime.maps import BPF_F_MMAPABLE, BPF_F_RDONLY_PROG, BPF_F_WRONLY_PROG

PROGS = pathlib.Path(__file__).resolve().parent / "progs"
RULES = PROGS / "kptr_rules.o"
ENOTSUPP, EACCES, EINVAL = 524, 13, 22


@pytest.mark.parametrize("program, message", [
    ("size_not_dw", "kptr access size must be BPF_DW"),
    ("variable_offset", "kptr access cannot have variable offset"),
    ("misaligned", "kptr access misaligned expected=8 off=9"),
    ("atomic_access", "kptr in map can only be accessed using BPF_MEM instruction mode"),
    ("store_to_referenced", "store to referenced kptr disallowed"),
    ("store_wrong_type", "invalid kptr access, R1 type=untrusted_ptr_other expected=ptr_conn"),
    ("store_scalar", "invalid kptr access, R0 type=scalar expected=ptr_conn"),
    ("store_immediate", "BPF_ST imm must be 0 when storing to kptr at off=8"),
    ("store_owned_into_untrusted", "invalid kptr access, R0 type=alloc_ptr_conn expected=ptr_conn"),
    ("xchg_untrusted_field", "off=8 kptr isn't referenced kptr"),
    ("xchg_not_a_kptr", "off=0 doesn't point to kptr"),
    ("xchg_map_without_kptrs", "map 'plain' has no valid kptr"),
    ("xchg_variable_offset", "R1 doesn't have constant offset. kptr has to be at the constant offset"),
    ("xchg_untrusted_pointer", "R2 type=untrusted_ptr_ expected=ptr_"),
    ("xchg_wrong_type", "invalid kptr access, R2 type=alloc_ptr_other expected=ptr_conn"),
    ("unreleased_object", "Unreleased reference id=2 alloc_insn=4"),
    ("unreleased_xchg_result", "Unreleased reference id=3 alloc_insn=11"),
    ("drop_untrusted", "arg#0 expected pointer to allocated object"),
    ("drop_twice", "arg#0 expected pointer to allocated object"),
    ("use_after_drop", "R6 invalid mem access 'scalar'"),
    ("use_after_drop_of_a_spilled_copy", "R1 invalid mem access 'scalar'"),
    ("no_null_check", "R0 invalid mem access 'alloc_ptr_or_null_'"),
    ("beyond_struct", "access beyond struct conn at off 24 size 4"),
    ("write_untrusted", "only read is supported"),
    ("new_of_variable_type", "R1 must be a known constant"),
    ("new_of_non_struct", "bpf_obj_new type ID argument must be of a struct"),
    ("helper_reads_kptr", "kptr cannot be accessed indirectly by helper"),
])
def test_each_rule_is_enforced_at_load(program, message):
    with pytest.raises(bpfjit.VerifierError) as caught:
        bpfjit.load(RULES, programs=[program])
    assert caught.value.message == message


def test_an_untrusted_kptr_load_is_checked_for_null_before_a_dereference():
    """kptr_maps.c's untrusted_unchecked reads through the untrusted field's pointer without a
    NULL check: the kernel's message (map_kptr_fail.c's case)."""
    with pytest.raises(bpfjit.VerifierError) as caught:
        bpfjit.load(PROGS / "kptr_maps.o", programs=["untrusted_unchecked"])
    assert caught.value.message == "R1 invalid mem access 'untrusted_ptr_or_null_'"


def test_the_untrusted_field_takes_null_and_pointers_of_its_type():
    obj = bpfjit.load(RULES, programs=["fine_untrusted_copy"])
    assert obj.programs["fine_untrusted_copy"].test_run(bytes(40)).retval == 0


def test_the_log_names_the_object_types():
    obj = bpfjit.load(PROGS / "kptr_stash.o", programs=["track"], log_level=2)
    log = obj.programs["track"].verification.log
    assert "R0=alloc_ptr_or_null_conn(id=" in log.replace("R0_w=", "R0=")


def test_a_kptr_must_point_to_a_struct():
    with pytest.raises(MapError, match=r"^map values: BTF: type id \d+: the kptr at offset 0 must point to a "
                                        r"struct, not type id \d+$") as caught:
        bpfjit.load(PROGS / "kptr_bad_type.o")
    assert caught.value.errno == EINVAL


@pytest.mark.parametrize("flags, errno, what", [
    (BPF_F_RDONLY_PROG, EACCES, "cannot be BPF_F_RDONLY_PROG or BPF_F_WRONLY_PROG"),
    (BPF_F_WRONLY_PROG, EACCES, "cannot be BPF_F_RDONLY_PROG or BPF_F_WRONLY_PROG"),
    (BPF_F_MMAPABLE, ENOTSUPP, "cannot be BPF_F_MMAPABLE"),
])
def test_a_map_holding_kptrs_is_never_read_only_write_only_or_mmapable(flags, errno, what):
    with pytest.raises(MapError, match=f"^map values \\(array\\): a value with kptrs {what}$") as caught:
        bpfjit.load(RULES, programs=[], maps={"values": {"map_flags": flags}})
    assert caught.value.errno == errno


def test_a_map_holding_kptrs_cannot_be_frozen():
    values = bpfjit.load(RULES, programs=[]).maps["values"]
    with pytest.raises(MapError, match=r"^map values \(array\): a map whose values hold kptrs cannot be frozen$") \
            as caught:
        values.freeze()
    assert caught.value.errno == ENOTSUPP and not values.frozen


def test_the_loader_makes_kfunc_calls_of_the_extern_calls():
    linked = {p.name: p for p in elf.read_object(PROGS / "kptr_stash.o").programs}["track"]
    calls = [insn.imm for insn in linked.insns if is_kfunc_call(insn)]
    assert calls == [kfunc_id("bpf_obj_new_impl"), kfunc_id("bpf_obj_drop_impl")]


def test_a_call_of_an_extern_no_kfunc_has_is_refused():
    with pytest.raises(bpfjit.ObjectError, match=r"call to bpf_cast_to_kern_ctx, which is not defined in this object "
                                                 r"\(kfuncs and externs are not supported\): bpfjit knows only the "
                                                 r"kfuncs bpf_obj_drop_impl, bpf_obj_new_impl\b"):
        bpfjit.load(PROGS / "kfunc_neighbour.o")
