// SPDX-License-Identifier: GPL-2.0
/*
 * /sys/module/dm_remap/stat/: one directory per mapped device (its kernel
 * name, dm-N) and all_devs, the aggregate since the module was loaded.
 *
 * A device's statistics belong to the mapped device, not to a table: every
 * table of the device (two are alive between dmsetup reload and resume) takes
 * a reference, and the directory goes when the last table does. Counting is
 * per CPU (this_cpu_add, no shared cache line); reading sums the CPUs.
 */
#include <linux/kobject.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/percpu.h>
#include <linux/slab.h>
#include <linux/sysfs.h>

#include "dm_remap_stats.h"

/* Implemented in Rust (src/logic/stats.rs via src/dm/stats.rs). */
ssize_t dmr_stats_format(unsigned int attr, const u64 *counters,
			 const u64 *gauges, char *buf, size_t len);
const char *dmr_stats_file_name(unsigned int attr);

struct dmr_pcpu {
	u64 c[DMR_NR_COUNTERS];
};

struct dmr_stats {
	struct kobject kobj;
	struct list_head list;
	dev_t dev;
	unsigned int refs;		/* tables using it; under dmr_lock */
	char name[DM_NAME_LEN];		/* dmsetup name; under dmr_lock */
	struct dmr_pcpu __percpu *pcpu;
	atomic64_t gauges[DMR_NR_GAUGES];
};

static DEFINE_MUTEX(dmr_lock);
static LIST_HEAD(dmr_devs);
static struct kobject *dmr_stat_kobj;
static struct kobject *dmr_all_kobj;
static struct dmr_pcpu __percpu *dmr_all_pcpu;

static void sum(struct dmr_pcpu __percpu *pcpu, u64 *out)
{
	int cpu, i;

	memset(out, 0, sizeof(u64) * DMR_NR_COUNTERS);
	for_each_possible_cpu(cpu) {
		struct dmr_pcpu *p = per_cpu_ptr(pcpu, cpu);

		for (i = 0; i < DMR_NR_COUNTERS; i++)
			out[i] += READ_ONCE(p->c[i]);
	}
}

static void zero(struct dmr_pcpu __percpu *pcpu)
{
	int cpu, i;

	for_each_possible_cpu(cpu) {
		struct dmr_pcpu *p = per_cpu_ptr(pcpu, cpu);

		for (i = 0; i < DMR_NR_COUNTERS; i++)
			WRITE_ONCE(p->c[i], 0);
	}
}

struct dmr_attr {
	struct kobj_attribute attr;
	unsigned int id;
};

static ssize_t show_values(unsigned int id, const u64 *c, const u64 *g, char *buf)
{
	return dmr_stats_format(id, c, g, buf, PAGE_SIZE);
}

static ssize_t dev_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct dmr_stats *s = container_of(kobj, struct dmr_stats, kobj);
	unsigned int id = container_of(attr, struct dmr_attr, attr)->id;
	u64 c[DMR_NR_COUNTERS], g[DMR_NR_GAUGES];
	int i;

	sum(s->pcpu, c);
	for (i = 0; i < DMR_NR_GAUGES; i++)
		g[i] = atomic64_read(&s->gauges[i]);
	return show_values(id, c, g, buf);
}

static ssize_t all_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	unsigned int id = container_of(attr, struct dmr_attr, attr)->id;
	u64 c[DMR_NR_COUNTERS], g[DMR_NR_GAUGES] = { 0 };
	struct dmr_stats *s;
	int i;

	sum(dmr_all_pcpu, c);
	/* Gauges of all_devs: the sum over the devices that exist now. */
	mutex_lock(&dmr_lock);
	list_for_each_entry(s, &dmr_devs, list)
		for (i = 0; i < DMR_NR_GAUGES; i++)
			g[i] += atomic64_read(&s->gauges[i]);
	mutex_unlock(&dmr_lock);
	return show_values(id, c, g, buf);
}

/* Named by Rust at init (dmr_stats_file_name); ids are FILES indices. */
static struct dmr_attr dev_attrs[DMR_NR_FILES];
static struct dmr_attr all_attrs[DMR_NR_FILES];

static ssize_t name_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct dmr_stats *s = container_of(kobj, struct dmr_stats, kobj);
	ssize_t n;

	mutex_lock(&dmr_lock);
	n = sysfs_emit(buf, "%s\n", s->name);
	mutex_unlock(&dmr_lock);
	return n;
}

static ssize_t devt_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	struct dmr_stats *s = container_of(kobj, struct dmr_stats, kobj);

	return sysfs_emit(buf, "%u:%u\n", MAJOR(s->dev), MINOR(s->dev));
}

static ssize_t dev_reset_store(struct kobject *kobj, struct kobj_attribute *attr,
			       const char *buf, size_t count)
{
	zero(container_of(kobj, struct dmr_stats, kobj)->pcpu);
	return count;
}

static ssize_t all_reset_store(struct kobject *kobj, struct kobj_attribute *attr,
			       const char *buf, size_t count)
{
	zero(dmr_all_pcpu);
	return count;
}

static struct kobj_attribute dmr_name_attr = __ATTR(name, 0444, name_show, NULL);
static struct kobj_attribute dmr_dev_attr = __ATTR(dev, 0444, devt_show, NULL);
static struct kobj_attribute dmr_dev_reset_attr = __ATTR(reset, 0200, NULL, dev_reset_store);
static struct kobj_attribute dmr_all_reset_attr = __ATTR(reset, 0200, NULL, all_reset_store);

#define NATTRS ARRAY_SIZE(dev_attrs)
static struct attribute *dmr_dev_list[NATTRS + 4];
static struct attribute *dmr_all_list[NATTRS + 2];
static const struct attribute_group dmr_dev_group = { .attrs = dmr_dev_list };
static const struct attribute_group dmr_all_group = { .attrs = dmr_all_list };
static const struct attribute_group *dmr_dev_groups[] = { &dmr_dev_group, NULL };

static void dmr_stats_release(struct kobject *kobj)
{
	struct dmr_stats *s = container_of(kobj, struct dmr_stats, kobj);

	free_percpu(s->pcpu);
	kfree(s);
}

static const struct kobj_type dmr_stats_ktype = {
	.release = dmr_stats_release,
	.sysfs_ops = &kobj_sysfs_ops,
	.default_groups = dmr_dev_groups,
};

int dmr_stats_init(void)
{
	size_t i;
	int r;

	for (i = 0; i < NATTRS; i++) {
		const char *name = dmr_stats_file_name(i);

		if (!name)
			return -EINVAL;
		dev_attrs[i] = (struct dmr_attr) {
			.attr = { .attr = { .name = name, .mode = 0444 },
				  .show = dev_show },
			.id = i,
		};
		all_attrs[i] = (struct dmr_attr) {
			.attr = { .attr = { .name = name, .mode = 0444 },
				  .show = all_show },
			.id = i,
		};
		dmr_dev_list[i] = &dev_attrs[i].attr.attr;
		dmr_all_list[i] = &all_attrs[i].attr.attr;
	}
	dmr_dev_list[NATTRS] = &dmr_name_attr.attr;
	dmr_dev_list[NATTRS + 1] = &dmr_dev_attr.attr;
	dmr_dev_list[NATTRS + 2] = &dmr_dev_reset_attr.attr;
	dmr_all_list[NATTRS] = &dmr_all_reset_attr.attr;

	dmr_all_pcpu = alloc_percpu(struct dmr_pcpu);
	if (!dmr_all_pcpu)
		return -ENOMEM;
	dmr_stat_kobj = kobject_create_and_add("stat", &THIS_MODULE->mkobj.kobj);
	if (!dmr_stat_kobj)
		goto nomem;
	dmr_all_kobj = kobject_create_and_add("all_devs", dmr_stat_kobj);
	if (!dmr_all_kobj)
		goto nomem;
	r = sysfs_create_group(dmr_all_kobj, &dmr_all_group);
	if (r) {
		kobject_put(dmr_all_kobj);
		kobject_put(dmr_stat_kobj);
		free_percpu(dmr_all_pcpu);
		return r;
	}
	return 0;
nomem:
	kobject_put(dmr_all_kobj);
	kobject_put(dmr_stat_kobj);
	free_percpu(dmr_all_pcpu);
	return -ENOMEM;
}

void dmr_stats_exit(void)
{
	sysfs_remove_group(dmr_all_kobj, &dmr_all_group);
	kobject_put(dmr_all_kobj);
	kobject_put(dmr_stat_kobj);
	free_percpu(dmr_all_pcpu);
}

void *dmr_stats_get(struct dm_target *ti)
{
	struct mapped_device *md = dm_table_get_md(ti->table);
	struct gendisk *disk = dm_disk(md);
	dev_t dev = disk_devt(disk);
	char name[DM_NAME_LEN];
	struct dmr_stats *s;

	if (dm_copy_name_and_uuid(md, name, NULL))
		name[0] = '\0';
	mutex_lock(&dmr_lock);
	list_for_each_entry(s, &dmr_devs, list) {
		if (s->dev == dev) {
			s->refs++;
			strscpy(s->name, name, sizeof(s->name));
			mutex_unlock(&dmr_lock);
			return s;
		}
	}
	s = kzalloc(sizeof(*s), GFP_KERNEL);
	if (!s)
		goto out;
	s->pcpu = alloc_percpu(struct dmr_pcpu);
	if (!s->pcpu) {
		kfree(s);
		s = NULL;
		goto out;
	}
	s->dev = dev;
	s->refs = 1;
	strscpy(s->name, name, sizeof(s->name));
	if (kobject_init_and_add(&s->kobj, &dmr_stats_ktype, dmr_stat_kobj, "%s",
				 disk->disk_name)) {
		kobject_put(&s->kobj);
		s = NULL;
		goto out;
	}
	list_add_tail(&s->list, &dmr_devs);
out:
	mutex_unlock(&dmr_lock);
	return s;
}

void dmr_stats_put(void *stats)
{
	struct dmr_stats *s = stats;

	mutex_lock(&dmr_lock);
	if (--s->refs) {
		mutex_unlock(&dmr_lock);
		return;
	}
	list_del(&s->list);
	mutex_unlock(&dmr_lock);
	kobject_del(&s->kobj);
	kobject_put(&s->kobj);
}

void dmr_stats_add(void *stats, unsigned int counter, u64 value)
{
	struct dmr_stats *s = stats;

	if (counter >= DMR_NR_COUNTERS)
		return;
	this_cpu_add(s->pcpu->c[counter], value);
	this_cpu_add(dmr_all_pcpu->c[counter], value);
}

/*
 * One routed request: ops and remapped (unless out of range: not remapped)
 * count one, bytes_counter counts bytes.
 */
void dmr_stats_add_io(void *stats, unsigned int ops, unsigned int bytes_counter,
		      unsigned int remapped, u64 bytes)
{
	struct dmr_stats *s = stats;

	if (ops >= DMR_NR_COUNTERS || bytes_counter >= DMR_NR_COUNTERS)
		return;
	this_cpu_inc(s->pcpu->c[ops]);
	this_cpu_inc(dmr_all_pcpu->c[ops]);
	this_cpu_add(s->pcpu->c[bytes_counter], bytes);
	this_cpu_add(dmr_all_pcpu->c[bytes_counter], bytes);
	if (remapped < DMR_NR_COUNTERS) {
		this_cpu_inc(s->pcpu->c[remapped]);
		this_cpu_inc(dmr_all_pcpu->c[remapped]);
	}
}

/* Every gauge at once: values holds DMR_NR_GAUGES of them. */
void dmr_stats_set_gauges(void *stats, const u64 *values)
{
	struct dmr_stats *s = stats;
	int i;

	for (i = 0; i < DMR_NR_GAUGES; i++)
		atomic64_set(&s->gauges[i], values[i]);
}
