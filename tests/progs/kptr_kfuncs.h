/* The kfuncs of kptr objects, declared as libbpf programs declare them (the kernel's
 * bpf_experimental.h): bpf_obj_new() makes a zeroed object of one of the program's own structs,
 * bpf_obj_drop() frees it; and the kptr tag of libbpf 1.2. Shared by kptr_stash.c and
 * kptr_rules.c.
 */
#ifndef KPTR_KFUNCS_H
#define KPTR_KFUNCS_H

#include <bpf/bpf_core_read.h>

/* libbpf before 1.2 has no __kptr_untrusted (and spells a referenced kptr __kptr_ref). */
#ifndef __kptr_untrusted
#define __kptr_untrusted __attribute__((btf_type_tag("kptr_untrusted")))
#endif

extern void *bpf_obj_new_impl(__u64 local_type_id__k, void *meta__ign) __ksym;
extern void bpf_obj_drop_impl(void *p__alloc, void *meta__ign) __ksym;

#define bpf_obj_new(type) ((type *)bpf_obj_new_impl(bpf_core_type_id_local(type), NULL))
#define bpf_obj_drop(kptr) bpf_obj_drop_impl(kptr, NULL)

#endif
